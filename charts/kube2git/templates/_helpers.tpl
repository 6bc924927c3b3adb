{{/* Names and labels. */}}
{{- define "kube2git.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kube2git.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kube2git.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube2git.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kube2git.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kube2git.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kube2git.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kube2git.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kube2git.gitSecretName" -}}
{{- default (printf "%s-git" (include "kube2git.fullname" .)) .Values.git.auth.existingSecret -}}
{{- end -}}

{{/*
The named API groups the ClusterRole reads (without captureSecrets): rbac.apiGroups, or
rbac.baseApiGroups and every group in .Capabilities.APIVersions ("apps/v1",
"apps/v1/Deployment"; the core group is "v1"), plus rbac.extraApiGroups. A JSON list.
*/}}
{{- define "kube2git.apiGroups" -}}
{{- $groups := list -}}
{{- if .Values.rbac.apiGroups -}}
{{- $groups = .Values.rbac.apiGroups -}}
{{- else -}}
{{- $groups = .Values.rbac.baseApiGroups | default list -}}
{{- range .Capabilities.APIVersions -}}
{{- $parts := splitList "/" . -}}
{{- if and (ge (len $parts) 2) (not (regexMatch "^v[0-9]+((alpha|beta)[0-9]+)?$" (first $parts))) -}}
{{- $groups = append $groups (first $parts) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- concat $groups .Values.rbac.extraApiGroups | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/*
"true" when leader election is on: more than one replica, or config.run.leader_election.enabled.
Only then does the chart create the Lease and the Role that may renew it.
*/}}
{{- define "kube2git.leaderElection" -}}
{{- if or (gt (int .Values.replicaCount) 1) (dig "run" "leader_election" "enabled" false (.Values.config | default dict)) (gt (int (include "kube2git.shards" .)) 1) -}}true{{- end -}}
{{- end -}}

{{- define "kube2git.leaseName" -}}{{ include "kube2git.fullname" . }}{{- end -}}

{{/* config.run.shards: with more than one, each shard has its own Lease. */}}
{{- define "kube2git.shards" -}}{{ dig "run" "shards" 1 (.Values.config | default dict) | int }}{{- end -}}

{{/* The Leases kube2git holds: one per shard, or the one leader Lease (JSON list). */}}
{{- define "kube2git.leaseNames" -}}
{{- $shards := int (include "kube2git.shards" .) -}}
{{- $base := include "kube2git.leaseName" . -}}
{{- $names := list -}}
{{- if gt $shards 1 -}}
{{- range $shard := until $shards -}}
{{- $names = append $names (printf "%s-shard-%d" $base $shard) -}}
{{- end -}}
{{- else -}}
{{- $names = list $base -}}
{{- end -}}
{{- $names | toJson -}}
{{- end -}}

{{/*
Refuse values that would lose the backup or leak a credential: the repository only on an
emptyDir (no remote, no volume) unless ephemeral is set, and a remote URL with a password
(the URL is rendered into the ConfigMap, and kube2git records ConfigMaps).
*/}}
{{- define "kube2git.validate" -}}
{{- if and (not .Values.git.remote) (not .Values.persistence.enabled) (not .Values.ephemeral) -}}
{{- fail "the backup would live only in an emptyDir and be lost with the pod: set git.remote (push it), or persistence.enabled=true (keep it on a volume), or ephemeral=true (accept the loss)" -}}
{{- end -}}
{{- if regexMatch "^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/@]*@" (.Values.git.remote | default "") -}}
{{- fail "git.remote must not contain a password or token (it would be stored in a ConfigMap): put it in git.auth.httpsToken or git.auth.existingSecret" -}}
{{- end -}}
{{- end -}}

{{- define "kube2git.configPath" -}}/etc/kube2git/config/config.yaml{{- end -}}
{{- define "kube2git.credentialsDir" -}}/etc/kube2git/git{{- end -}}
{{- define "kube2git.repoPath" -}}/data/kube2git.git{{- end -}}
{{- define "kube2git.fingerprintKeyDir" -}}/etc/kube2git/fingerprint{{- end -}}

{{/*
The filters.secrets settings of SOPS mode, from .Values.sops; empty when it is off.
*/}}
{{- define "kube2git.sopsSecrets" -}}
{{- with .Values.sops.ageRecipients -}}
{{- if not $.Values.captureSecrets -}}
{{- fail "sops.ageRecipients needs captureSecrets: true (without it no Secret is read)" -}}
{{- end -}}
{{- if not $.Values.sops.fingerprintKeySecret -}}
{{- fail "sops.ageRecipients needs sops.fingerprintKeySecret (a Secret with the fingerprint key)" -}}
{{- end -}}
{{- range . -}}
{{- if not (regexMatch "^age1[0-9a-z]+$" .) -}}
{{- fail (printf "sops.ageRecipients takes age public keys (age1...), never an identity: %q is not one" (trunc 12 .)) -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "mode" "sops" "age_recipients" . "fingerprint_key_file" (printf "%s/key" (include "kube2git.fingerprintKeyDir" $))) -}}
{{- end -}}
{{- end -}}

{{/*
kube2git's configuration file: .Values.config with the chart's own settings laid over it.
*/}}
{{- define "kube2git.config" -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- $creds := include "kube2git.credentialsDir" . -}}
{{- $remote := dict "url" .Values.git.remote -}}
{{- $auth := .Values.git.auth.type | default "none" -}}
{{- if eq $auth "ssh" -}}
{{- $_ := set $remote "ssh" (dict "private_key_file" (printf "%s/ssh-privatekey" $creds) "known_hosts_file" (printf "%s/known_hosts" $creds)) -}}
{{- else if eq $auth "https" -}}
{{- $_ := set $remote "https" (dict "username" .Values.git.auth.httpsUsername "token_file" (printf "%s/token" $creds)) -}}
{{- else if ne $auth "none" -}}
{{- fail (printf "git.auth.type must be none, ssh or https, not %q" $auth) -}}
{{- end -}}
{{- $election := dict "name" (include "kube2git.leaseName" .) "namespace" .Release.Namespace -}}
{{- if include "kube2git.leaderElection" . -}}
{{- $_ := set $election "enabled" true -}}
{{- end -}}
{{- $generated := dict
      "repo" (include "kube2git.repoPath" .)
      "git" (dict "branch" .Values.git.branch "remote" $remote)
      "run" (dict "listen" (printf "0.0.0.0:%d" (int .Values.service.port)) "leader_election" $election) -}}
{{- with include "kube2git.sopsSecrets" . -}}
{{- $_ := set $generated "filters" (dict "secrets" (fromYaml .)) -}}
{{- end -}}
{{- if not .Values.captureSecrets -}}
{{- $skip := concat (dig "cluster" "skip_types" list $config) (list "secrets") | uniq -}}
{{- $_ := set $generated "cluster" (dict "skip_types" $skip) -}}
{{- $_ := set $generated "filters" (dict "secrets" (dict "mode" "skip")) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $config $generated) -}}
{{- end -}}
