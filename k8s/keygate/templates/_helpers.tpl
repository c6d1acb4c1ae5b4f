{{- define "keygate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keygate.fullname" -}}
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

{{- define "keygate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "keygate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "keygate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keygate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "keygate.keygateImage" -}}
{{ .Values.keygate.image.repository }}:{{ .Values.keygate.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "keygate.natsSecretName" -}}
{{- if .Values.nats.credentials.existingSecret }}
{{- .Values.nats.credentials.existingSecret }}
{{- else if .Values.nats.credentials.create }}
{{- printf "%s-nats" (include "keygate.fullname" .) }}
{{- end }}
{{- end }}

{{- /* Rendered Envoy bootstrap: envoy/envoy.yaml with the two ports set. */ -}}
{{- define "keygate.envoyConfig" -}}
{{- .Files.Get "files/envoy.yaml"
    | replace "port_value: 8080" (printf "port_value: %d" (int .Values.envoy.port))
    | replace "port_value: 8000" (printf "port_value: %d" (int .Values.backend.port)) }}
{{- end }}

{{- define "keygate.keygateConfig" -}}
{{- $c := dict
    "grpc_addr" "127.0.0.1:9191"
    "admin_addr" (printf "0.0.0.0:%d" (int .Values.keygate.adminPort))
    "log_level" .Values.keygate.logLevel
    "shutdown_delay" .Values.keygate.shutdownDelay
    "shutdown_grace" .Values.keygate.shutdownGrace
    "default_rate_limit" .Values.keygate.defaultRateLimit
    "routes" .Values.keygate.routes
    "default_scope" .Values.keygate.defaultScope
    "nats" (dict "replicas" (int .Values.nats.replicas)) }}
{{- with .Values.keygate.api }}
{{- if .enabled }}
{{- $_ := set $c "api_addr" (printf "0.0.0.0:%d" (int .port)) }}
{{- $_ := set $c "api_tls" (dict "cert_file" "/etc/keygate/api-tls/tls.crt" "key_file" "/etc/keygate/api-tls/tls.key") }}
{{- if .adminToken.existingSecret }}
{{- $_ := set $c "api_token_file" "/etc/keygate/api-token/token" }}
{{- $_ := set $c "api_token_scopes" .adminToken.scopes }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml (mustMergeOverwrite $c (deepCopy .Values.keygate.extraConfig)) }}
{{- end }}

{{- /* GOMEMLIMIT for keygate: 90 % of its memory limit, in MiB; empty
       without a limit in Ki, Mi or Gi. */ -}}
{{- define "keygate.goMemLimit" -}}
{{- $limit := toString (dig "limits" "memory" "" (.Values.keygate.resources | default dict)) -}}
{{- $mib := 0 -}}
{{- if hasSuffix "Gi" $limit -}}{{- $mib = mul (trimSuffix "Gi" $limit | int) 1024 -}}
{{- else if hasSuffix "Mi" $limit -}}{{- $mib = trimSuffix "Mi" $limit | int -}}
{{- else if hasSuffix "Ki" $limit -}}{{- $mib = div (trimSuffix "Ki" $limit | int) 1024 -}}
{{- end -}}
{{- if gt $mib 0 -}}{{ div (mul $mib 9) 10 }}MiB{{- end -}}
{{- end }}

{{- /* The two sidecar containers, shared by the Deployment and the
       sidecars-mode NOTES. */ -}}
{{- define "keygate.sidecarContainers" -}}
- name: envoy
  image: "{{ .Values.envoy.image.repository }}:{{ .Values.envoy.image.tag }}"
  imagePullPolicy: {{ .Values.envoy.image.pullPolicy }}
  command: ["/usr/local/bin/envoy"]
  args:
    - --config-path
    - /etc/envoy/envoy.yaml
    - --log-level
    - {{ .Values.envoy.logLevel | quote }}
    - --log-format-escaped
  ports:
    - name: http
      containerPort: {{ .Values.envoy.port }}
      protocol: TCP
  {{- with .Values.envoy.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.envoy.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.envoy.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.envoy.preStop }}
  lifecycle:
    preStop:
      {{- toYaml . | nindent 6 }}
  {{- end }}
  securityContext:
    {{- toYaml (merge (dict "runAsUser" 101 "runAsGroup" 101) .Values.containerSecurityContext) | nindent 4 }}
  volumeMounts:
    - name: envoy-config
      mountPath: /etc/envoy
      readOnly: true
    - name: envoy-tmp
      mountPath: /tmp
- name: keygate
  image: {{ include "keygate.keygateImage" . | quote }}
  imagePullPolicy: {{ .Values.keygate.image.pullPolicy }}
  args: ["serve", "--config", "/etc/keygate/config/config.yaml"]
  env:
    {{- with include "keygate.goMemLimit" . }}
    # Go's soft memory limit: 90 % of the container's, so the collector
    # works harder before the kernel's limit is reached.
    - name: GOMEMLIMIT
      value: {{ . | quote }}
    {{- end }}
    - name: KEYGATE_NATS_URL
      value: {{ required "nats.url is required" .Values.nats.url | quote }}
    {{- if include "keygate.natsSecretName" . }}
    - name: KEYGATE_NATS_CREDS_FILE
      value: /etc/keygate/nats/{{ .Values.nats.credentials.key }}
    {{- end }}
    {{- with .Values.keygate.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: admin
      containerPort: {{ .Values.keygate.adminPort }}
      protocol: TCP
    {{- if .Values.keygate.api.enabled }}
    - name: api
      containerPort: {{ .Values.keygate.api.port }}
      protocol: TCP
    {{- end }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: admin
    periodSeconds: 5
  livenessProbe:
    httpGet:
      path: /healthz
      port: admin
    periodSeconds: 10
    failureThreshold: 6
  {{- with .Values.keygate.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: keygate-config
      mountPath: /etc/keygate/config
      readOnly: true
    {{- if include "keygate.natsSecretName" . }}
    - name: nats-creds
      mountPath: /etc/keygate/nats
      readOnly: true
    {{- end }}
    {{- if .Values.keygate.api.enabled }}
    - name: keygate-api-tls
      mountPath: /etc/keygate/api-tls
      readOnly: true
    {{- if .Values.keygate.api.adminToken.existingSecret }}
    - name: keygate-api-token
      mountPath: /etc/keygate/api-token
      readOnly: true
    {{- end }}
    {{- end }}
    - name: keygate-tmp
      mountPath: /tmp
{{- end }}

{{- define "keygate.sidecarVolumes" -}}
- name: envoy-config
  configMap:
    name: {{ include "keygate.fullname" . }}-envoy
- name: envoy-tmp
  emptyDir: {}
- name: keygate-config
  configMap:
    name: {{ include "keygate.fullname" . }}-config
{{- with include "keygate.natsSecretName" . }}
- name: nats-creds
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with .Values.keygate.api }}
{{- if .enabled }}
- name: keygate-api-tls
  secret:
    secretName: {{ .tls.existingSecret }}
    defaultMode: 0440
    items:
      - { key: tls.crt, path: tls.crt }
      - { key: tls.key, path: tls.key }
{{- with .adminToken.existingSecret }}
- name: keygate-api-token
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - { key: {{ $.Values.keygate.api.adminToken.key | quote }}, path: token }
{{- end }}
{{- end }}
{{- end }}
- name: keygate-tmp
  emptyDir: {}
{{- end }}

{{- /* NOTES' lines on the admin API's token. */ -}}
{{- define "keygate.apiTokenNotes" -}}
{{- with .Values.keygate.api.adminToken }}
{{- if .existingSecret }}
Admin token: key {{ .key | quote }} of Secret {{ .existingSecret }}, stored at start with scopes
{{ join "," .scopes }} (a revoked one stays revoked: put a new one in the Secret and restart).
{{- else }}
Admin tokens: keygate tokens create --scope read --nats-url {{ $.Values.nats.url }}
{{- end }}
{{- end }}
{{- end }}
