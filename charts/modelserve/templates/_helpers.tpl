{{/*
Names. With the release named like the chart (`helm install modelserve ...`) every object
is `modelserve-<component>`, the names the operator's and the contract service's own
defaults expect (modelserve-gateway, modelserve-minio, ...).
*/}}
{{- define "modelserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelserve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The name of one component's objects: `include "modelserve.component" (list . "gateway")`. */}}
{{- define "modelserve.component" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "modelserve.fullname" $root) (index . 1) }}
{{- end }}

{{- define "modelserve.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "modelserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelserve
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component: `include "modelserve.componentLabels" (list . "gateway")`. */}}
{{- define "modelserve.componentLabels" -}}
{{ include "modelserve.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "modelserve.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "modelserve.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* The one image every ModelServe component runs. */}}
{{- define "modelserve.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* A service's in-cluster URL: (list . "gateway" 8200). Full DNS names: the operator hands
some of them to pods in other namespaces. */}}
{{- define "modelserve.url" -}}
{{- $root := index . 0 }}
{{- printf "http://%s.%s.svc:%v" (include "modelserve.component" (list $root (index . 1))) $root.Release.Namespace (index . 2) }}
{{- end }}

{{/* A ConfigMap's data as a stable checksum, for a pod template annotation. */}}
{{- define "modelserve.checksum" -}}
{{- . | sha256sum }}
{{- end }}

{{/* --- Secrets: where each credential is read from ------------------------------ */}}

{{- define "modelserve.authSecret" -}}
{{- .Values.auth.existingSecret | default (include "modelserve.component" (list . "auth")) }}
{{- end }}

{{/* The Secret and key holding the libpq URL of the database. */}}
{{- define "modelserve.databaseSecret" -}}
{{- if .Values.postgresql.enabled }}
{{- include "modelserve.component" (list . "postgresql") }}
{{- else if .Values.externalDatabase.existingSecret }}
{{- .Values.externalDatabase.existingSecret }}
{{- else }}
{{- include "modelserve.component" (list . "database") }}
{{- end }}
{{- end }}

{{- define "modelserve.databaseSecretKey" -}}
{{- if and (not .Values.postgresql.enabled) .Values.externalDatabase.existingSecret }}
{{- .Values.externalDatabase.existingSecretKey }}
{{- else }}url{{- end }}
{{- end }}

{{/* The platform store (models that servers load): endpoint and credentials' Secret. */}}
{{- define "modelserve.storeEndpoint" -}}
{{- if .Values.minio.enabled }}
{{- printf "%s.%s.svc:9000" (include "modelserve.component" (list . "minio")) .Release.Namespace }}
{{- else }}
{{- required "externalS3.endpoint is required when minio.enabled is false" .Values.externalS3.endpoint }}
{{- end }}
{{- end }}

{{- define "modelserve.storeSecure" -}}
{{- if .Values.minio.enabled }}false{{ else }}{{ .Values.externalS3.secure }}{{ end }}
{{- end }}

{{- define "modelserve.storeSecret" -}}
{{- if .Values.minio.enabled }}
{{- include "modelserve.component" (list . "minio") }}
{{- else if .Values.externalS3.existingSecret }}
{{- .Values.externalS3.existingSecret }}
{{- else }}
{{- include "modelserve.component" (list . "s3") }}
{{- end }}
{{- end }}

{{/* The upstream ("quant") store: its own, or else the platform store. */}}
{{- define "modelserve.upstreamEndpoint" -}}
{{- .Values.download.upstream.endpoint | default (include "modelserve.storeEndpoint" .) }}
{{- end }}

{{- define "modelserve.upstreamSecure" -}}
{{- if .Values.download.upstream.endpoint }}{{ .Values.download.upstream.secure }}{{ else }}{{ include "modelserve.storeSecure" . }}{{ end }}
{{- end }}

{{- define "modelserve.upstreamSecret" -}}
{{- if .Values.download.upstream.existingSecret }}
{{- .Values.download.upstream.existingSecret }}
{{- else if .Values.download.upstream.endpoint }}
{{- include "modelserve.component" (list . "upstream") }}
{{- else }}
{{- include "modelserve.storeSecret" . }}
{{- end }}
{{- end }}

{{/* A value from a Secret that exists already (kept across upgrades), else "". */}}
{{- define "modelserve.existingSecretValue" -}}
{{- $root := index . 0 }}
{{- $secret := lookup "v1" "Secret" $root.Release.Namespace (index . 1) }}
{{- $data := dig "data" dict ($secret | default dict) }}
{{- get $data (index . 2) | b64dec }}
{{- end }}

{{/* --- Pods ------------------------------------------------------------------------- */}}

{{/* Security contexts of ModelServe's own containers. */}}
{{- define "modelserve.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "modelserve.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* --- Tokens -------------------------------------------------------------------- */}}

{{- define "modelserve.rs256" -}}
{{- if eq .Values.auth.algorithm "RS256" }}true{{ end }}
{{- end }}

{{/* The Secret holding the RS256 private key, which only the gateway's pods mount. */}}
{{- define "modelserve.jwtKeySecret" -}}
{{- .Values.auth.privateKey.existingSecret | default (include "modelserve.component" (list . "jwt-key")) }}
{{- end }}

{{- define "modelserve.jwtKeySecretKey" -}}
{{- if .Values.auth.privateKey.existingSecret }}{{ .Values.auth.privateKey.existingSecretKey }}{{ else }}private-key.pem{{ end }}
{{- end }}

{{- define "modelserve.jwtKeyFolder" -}}/etc/modelserve/jwt{{- end }}

{{/* JWT_* settings of a service, as a dict: (list . "gateway"). The gateway signs: with
RS256 its private key file, with HS256 the shared secret (from jwtSecretEnv). The others
only verify: with RS256 against the key set the gateway publishes. */}}
{{- define "modelserve.jwtConfig" -}}
{{- $root := index . 0 }}
{{- $config := dict
  "JWT_ALGORITHM" $root.Values.auth.algorithm
  "JWT_ISSUER" $root.Values.auth.issuer
  "JWT_AUDIENCE" $root.Values.auth.audience
  "JWT_EXPIRY_MINUTES" $root.Values.auth.expiryMinutes
  "JWT_REVOCATION_SECONDS" $root.Values.auth.revocationSeconds
  "JWT_REVOCATION_MAX_STALE_SECONDS" $root.Values.auth.revocationMaxStaleSeconds
  "JWT_API_KEY_CACHE_SECONDS" $root.Values.auth.apiKeyCacheSeconds
  "JWT_API_KEY_NEGATIVE_CACHE_SECONDS" $root.Values.auth.apiKeyNegativeCacheSeconds
}}
{{- if ne (index . 1) "gateway" }}
{{- /* API keys and revocations: the gateway knows them, the others ask it. */}}
{{- $_ := set $config "JWT_GATEWAY_URL" (include "modelserve.url" (list $root "gateway" 8200)) }}
{{- end }}
{{- if include "modelserve.rs256" $root }}
{{- if eq (index . 1) "gateway" }}
{{- $_ := set $config "JWT_PRIVATE_KEY_FILE" (printf "%s/private-key.pem" (include "modelserve.jwtKeyFolder" $root)) }}
{{- else }}
{{- $_ := set $config "JWT_JWKS_URL" (printf "%s/.well-known/jwks.json" (include "modelserve.url" (list $root "gateway" 8200))) }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The HS256 secret as an environment variable; nothing with RS256. */}}
{{- define "modelserve.jwtSecretEnv" -}}
{{- if not (include "modelserve.rs256" .) }}
- name: JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "modelserve.authSecret" . }}
      key: jwt-secret
{{- end }}
{{- end }}

{{/* RS256: the key of the jobs service's own service token (JWT_SERVICE_SECRET), for the
gateway (which checks it) and the jobs service (which signs with it); nothing with HS256. */}}
{{- define "modelserve.serviceSecretEnv" -}}
{{- if include "modelserve.rs256" . }}
- name: JWT_SERVICE_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "modelserve.authSecret" . }}
      key: service-secret
{{- end }}
{{- end }}

{{/* Placement and the rest of a pod spec, from a component's values: (list . $values) */}}
{{- define "modelserve.placement" -}}
{{- $values := index . 1 }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with (index . 0).Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A ConfigMap's data from a dict: every value a string, nulls and empty left out
(the services read an empty variable as a value, not as unset). */}}
{{- define "modelserve.configData" -}}
{{- range $key, $value := . }}
{{- if not (kindIs "invalid" $value) }}
{{- $text := toString $value }}
{{- if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) }}
{{- $text = toString (int64 $value) }}
{{- end }}
{{- if ne $text "" }}
{{ $key }}: {{ $text | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The rules of a component, read from the RBAC manifest that the test bed also applies
(files/rbac/<component>.yaml links to <component>/deploy/rbac.yaml): one source.
(list . "gateway" "ClusterRole") gives its ClusterRole's rules, which are granted in every
namespace; (list . "gateway" "Role") the rules of its Roles (the same in each namespace
where ModelServes live), granted in each of serverNamespaces, or "" when it has none.
*/}}
{{- define "modelserve.rbacRules" -}}
{{- $root := index . 0 }}
{{- $kind := index . 2 }}
{{- $file := printf "files/rbac/%s.yaml" (index . 1) }}
{{- $rules := list }}
{{- $found := false }}
{{- range regexSplit "(?m)^---\\s*$" ($root.Files.Get $file) -1 }}
{{- $doc := fromYaml . }}
{{- /* Only the component's own (ClusterRole and) Roles: others (the operator's Role for
the gateways' Leases) are templated where they belong. */}}
{{- if and (eq (get $doc "kind") $kind) (eq (get (get $doc "metadata" | default dict) "name") (printf "modelserve-%s" (index $ 1))) }}
{{- if and $found (ne (toYaml (get $doc "rules")) (toYaml $rules)) }}
{{- fail (printf "the %ss of %s differ: each namespace gets the same rules" $kind $file) }}
{{- end }}
{{- $rules = get $doc "rules" }}
{{- $found = true }}
{{- end }}
{{- end }}
{{- if and (eq $kind "ClusterRole") (not $rules) }}
{{- fail (printf "%s holds no ClusterRole rules" $file) }}
{{- end }}
{{- if $rules }}
{{- toYaml $rules }}
{{- end }}
{{- end }}

{{/* The namespaces where ModelServes live: serverNamespaces and the release's own, once
each, comma-separated (OPERATOR_NAMESPACES, GATEWAY_WATCH_NAMESPACES). */}}
{{- define "modelserve.serverNamespaces" -}}
{{- $names := list }}
{{- range .Values.serverNamespaces }}
{{- $names = append $names . }}
{{- end }}
{{- $names = append $names .Release.Namespace }}
{{- uniq $names | join "," }}
{{- end }}

{{/* ServiceAccount's ClusterRole and binding of a component, and its Role and binding in
each namespace where ModelServes live when its manifest has Roles: (list . "gateway") */}}
{{- define "modelserve.rbac" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $name := include "modelserve.component" (list $root $component) }}
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $name }}
  labels:
    {{- include "modelserve.componentLabels" (list $root $component) | nindent 4 }}
rules:
  {{- include "modelserve.rbacRules" (list $root $component "ClusterRole") | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $name }}
  labels:
    {{- include "modelserve.componentLabels" (list $root $component) | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ $name }}
    namespace: {{ $root.Release.Namespace }}
{{- $namespaced := include "modelserve.rbacRules" (list $root $component "Role") }}
{{- if $namespaced }}
{{- range splitList "," (include "modelserve.serverNamespaces" $root) }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $name }}
  namespace: {{ . }}
  labels:
    {{- include "modelserve.componentLabels" (list $root $component) | nindent 4 }}
rules:
  {{- $namespaced | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $name }}
  namespace: {{ . }}
  labels:
    {{- include "modelserve.componentLabels" (list $root $component) | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ $name }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modelserve.serviceAccount" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "modelserve.component" (list $root $component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "modelserve.componentLabels" (list $root $component) | nindent 4 }}
{{- if not (index . 2) }}
# No Kubernetes API access needed: no token in the pods.
automountServiceAccountToken: false
{{- end }}
{{- end }}

{{/* The ClusterIP Service of a component: (list . "gateway" (list (dict "name" "http" "port" 8200))) */}}
{{- define "modelserve.service" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "modelserve.component" (list $root $component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "modelserve.componentLabels" (list $root $component) | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "modelserve.selectorLabels" (list $root $component) | nindent 4 }}
  ports:
    {{- range index . 2 }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .name }}
      protocol: TCP
    {{- end }}
{{- end }}

{{/* An HTTP probe on a named port, with the component's timings. */}}
{{- define "modelserve.probes" -}}
{{- $path := index . 0 }}
{{- $port := index . 1 -}}
startupProbe:
  httpGet: {path: {{ $path }}, port: {{ $port }}}
  periodSeconds: 5
  failureThreshold: 60
readinessProbe:
  httpGet: {path: {{ $path }}, port: {{ $port }}}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
livenessProbe:
  httpGet: {path: {{ $path }}, port: {{ $port }}}
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
{{- end }}

{{/* A service's probes (readiness on /ready: its dependencies answer; liveness and
startup on /health: the process answers) and its preStop hook: a sleep, so that the
endpoints drop the pod before SIGTERM stops its listening (the image's /bin/sleep, which
every Kubernetes version runs, not the 1.30+ sleep action). */}}
{{- define "modelserve.serviceProbes" -}}
{{- $root := index . 0 }}
{{- $port := index . 1 -}}
startupProbe:
  httpGet: {path: /health, port: {{ $port }}}
  periodSeconds: 5
  failureThreshold: 60
readinessProbe:
  httpGet: {path: /ready, port: {{ $port }}}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
livenessProbe:
  httpGet: {path: /health, port: {{ $port }}}
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
lifecycle:
  preStop:
    exec:
      command: [sleep, {{ $root.Values.shutdown.preStopSeconds | quote }}]
{{- end }}

{{/* The pod's terminationGracePeriodSeconds: the preStop sleep, then the grace for
requests in flight, then 10 s to close what the service opened. */}}
{{- define "modelserve.terminationGrace" -}}
{{- add .Values.shutdown.preStopSeconds .Values.shutdown.graceSeconds 10 }}
{{- end }}

{{/* The settings of logs and shutdown that every service reads, under its prefix. */}}
{{- define "modelserve.serviceRuntime" -}}
{{- $root := index . 0 }}
{{- $prefix := index . 1 -}}
{{ $prefix }}_LOG_FORMAT: {{ $root.Values.logFormat | quote }}
{{ $prefix }}_SHUTDOWN_GRACE_SECONDS: {{ $root.Values.shutdown.graceSeconds | quote }}
{{- end }}

{{/* The ports model servers listen on: the operator sets them, their NetworkPolicy opens them. */}}
{{- define "modelserve.vllmPort" -}}8000{{- end }}
{{- define "modelserve.llamacppPort" -}}8080{{- end }}
