{{/*
Expand the name of the chart.
*/}}
{{- define "levitated.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A default fully qualified app name, truncated at 63 characters because some
Kubernetes name fields are limited to that (by the DNS naming spec). If the
release name contains the chart name it is used as the full name.
*/}}
{{- define "levitated.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "levitated.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "levitated.labels" -}}
helm.sh/chart: {{ include "levitated.chart" . }}
{{ include "levitated.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: levitated
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "levitated.selectorLabels" -}}
app.kubernetes.io/name: {{ include "levitated.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "levitated.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "levitated.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "levitated.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/*
The Secret holding the token file (tokens.json), if any.
*/}}
{{- define "levitated.authSecretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else if .Values.auth.tokens }}
{{- printf "%s-tokens" (include "levitated.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The token file of auth.tokens, in levitated's format (pkg/auth): the id is
the token's 16 hex digits after "lev_", the hash its SHA-256.
*/}}
{{- define "levitated.tokenFile" -}}
{{- $records := list }}
{{- range $i, $t := .Values.auth.tokens }}
{{- $where := printf "auth.tokens[%d]" $i }}
{{- $tenant := required (printf "%s.tenant is required" $where) $t.tenant }}
{{- $scopes := required (printf "%s.scopes is required (read, write, events:write, analysis, admin or all)" $where) $t.scopes }}
{{- if has "all" $scopes }}{{ $scopes = list "read" "write" "events:write" "analysis" "admin" }}{{ end }}
{{- $id := "" }}
{{- $hash := "" }}
{{- if $t.token }}
{{- if not (regexMatch "^lev_[0-9a-f]{16}_[0-9a-f]{64}$" $t.token) }}
{{- fail (printf "%s.token: want lev_ followed by 16 and 64 lower-case hex digits, e.g. echo \"lev_$(openssl rand -hex 8)_$(openssl rand -hex 32)\"" $where) }}
{{- end }}
{{- $id = substr 4 20 $t.token }}
{{- $hash = sha256sum $t.token }}
{{- else if $t.sha256 }}
{{- $id = required (printf "%s.id (the token's 16 hex digits after lev_) is required with sha256" $where) $t.id }}
{{- $hash = $t.sha256 }}
{{- else }}
{{- fail (printf "%s: give token or sha256" $where) }}
{{- end }}
{{- $records = append $records (dict "id" $id "tenant" $tenant "scopes" $scopes "description" ($t.description | default "") "created_at" "1970-01-01T00:00:00Z" "sha256" $hash) }}
{{- end }}
{{- dict "version" 1 "tokens" $records | toPrettyJson }}
{{- end }}

{{/*
Whether a credential is configured; levitated refuses the pod network
without one.
*/}}
{{- define "levitated.authConfigured" -}}
{{- if or (include "levitated.authSecretName" .) .Values.auth.tokenSecrets .Values.auth.bootstrapToken .Values.auth.trustedProxy .Values.auth.insecureAllowUnauthenticatedRemoteAccess .Values.webConfig }}true{{ end }}
{{- end }}

{{/*
The in-cluster base URL.
*/}}
{{- define "levitated.url" -}}
http://{{ include "levitated.fullname" . }}.{{ .Release.Namespace }}.svc:{{ .Values.service.port }}
{{- end }}
