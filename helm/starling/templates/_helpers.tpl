{{/* ---------------------------------------------------------------------
Names and labels
--------------------------------------------------------------------- */}}

{{- define "starling.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name. Kept at most 52 characters: StatefulSet pods get a
"-<ordinal>" suffix and a "controller-revision-hash" label of the name plus
11 characters, which must stay within 63.
*/}}
{{- define "starling.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "starling.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "starling.selectorLabels" -}}
app.kubernetes.io/name: {{ include "starling.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "starling.labels" -}}
helm.sh/chart: {{ include "starling.chart" . }}
{{ include "starling.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: starling
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "starling.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "starling.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "starling.headlessName" -}}
{{- printf "%s-headless" (include "starling.fullname" .) }}
{{- end }}

{{- define "starling.adminServiceName" -}}
{{- printf "%s-admin" (include "starling.fullname" .) }}
{{- end }}

{{- define "starling.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* In-cluster DNS name of the admin Service. */}}
{{- define "starling.adminURL" -}}
{{- printf "http://%s.%s.svc.%s:%d" (include "starling.adminServiceName" .) .Release.Namespace .Values.clusterDomain (int .Values.admin.port) }}
{{- end }}

{{/* Stable DNS name of pod <ordinal>: dict "ctx" $ "ordinal" N. */}}
{{- define "starling.podHost" -}}
{{- $ctx := .ctx }}
{{- printf "%s-%d.%s.%s.svc.%s" (include "starling.fullname" $ctx) (int .ordinal) (include "starling.headlessName" $ctx) $ctx.Release.Namespace $ctx.Values.clusterDomain }}
{{- end }}

{{/* "ADDR:PORT" for a listener bind: dict "ctx" $ "port" N. */}}
{{- define "starling.bind" -}}
{{- $addr := .ctx.Values.bindAddress }}
{{- if contains ":" $addr }}
{{- printf "[%s]:%d" $addr (int .port) }}
{{- else }}
{{- printf "%s:%d" $addr (int .port) }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------------
Secrets and ConfigMaps the pods mount
--------------------------------------------------------------------- */}}

{{- define "starling.adminTokenSecretName" -}}
{{- default (printf "%s-admin-token" (include "starling.fullname" .)) .Values.admin.token.existingSecret }}
{{- end }}

{{- define "starling.adminTokenSecretKey" -}}
{{- if .Values.admin.token.existingSecret }}{{ .Values.admin.token.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{- define "starling.clusterSecretName" -}}
{{- default (printf "%s-cluster-secret" (include "starling.fullname" .)) .Values.cluster.secret.existingSecret }}
{{- end }}

{{- define "starling.clusterSecretKey" -}}
{{- if .Values.cluster.secret.existingSecret }}{{ .Values.cluster.secret.existingSecretKey }}{{ else }}secret{{ end }}
{{- end }}

{{- define "starling.policyConfigMapName" -}}
{{- default (printf "%s-policy" (include "starling.fullname" .)) .Values.policy.existingConfigMap }}
{{- end }}

{{- define "starling.policyConfigMapKey" -}}
{{- if .Values.policy.existingConfigMap }}{{ .Values.policy.existingConfigMapKey }}{{ else }}policy.toml{{ end }}
{{- end }}

{{/* True ("true") when a TLS listener is enabled. */}}
{{- define "starling.tlsEnabled" -}}
{{- if or .Values.listeners.mqtts.enabled .Values.listeners.wss.enabled }}true{{ end }}
{{- end }}

{{- define "starling.tlsSecretName" -}}
{{- if .Values.tls.secretName }}
{{- .Values.tls.secretName }}
{{- else if .Values.tls.certificate.create }}
{{- printf "%s-tls" (include "starling.fullname" .) }}
{{- end }}
{{- end }}

{{- define "starling.clientCASecretName" -}}
{{- default (include "starling.tlsSecretName" .) .Values.tls.clientCA.secretName }}
{{- end }}

{{/* Listeners in a fixed order, as a list of dicts with their name. */}}
{{- define "starling.listenerNames" -}}
mqtt mqtts ws wss
{{- end }}

{{/* ---------------------------------------------------------------------
TOML rendering of user-supplied sections
--------------------------------------------------------------------- */}}

{{/* A TOML key: bare when possible, else quoted. */}}
{{- define "starling.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/*
A TOML value. Whole numbers are written as integers (Helm reads numbers from
values files as floats, and the broker's integer settings refuse "10.0");
the broker's float settings accept integers.
*/}}
{{- define "starling.toml.value" -}}
{{- $v := . }}
{{- if kindIs "string" $v }}{{ toJson $v }}
{{- else if kindIs "bool" $v }}{{ ternary "true" "false" $v }}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) }}
{{- if eq (float64 $v) (floor $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "int32" $v) (kindIs "uint64" $v) }}{{ $v }}
{{- else if kindIs "slice" $v }}[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "starling.toml.value" $e }}{{ end }}]
{{- else }}{{ fail (printf "starling: cannot write %v (%s) as a TOML value" $v (kindOf $v)) }}
{{- end }}
{{- end }}

{{/* The scalar keys of a map as "key = value" lines (nested maps skipped). */}}
{{- define "starling.toml.pairs" -}}
{{- range $k, $v := . }}
{{- if not (kindIs "map" $v) }}
{{ include "starling.toml.key" $k }} = {{ include "starling.toml.value" $v }}
{{- end }}
{{- end }}
{{- end }}

{{/* Nested maps as sub-tables: dict "name" "telemetry" "table" $map. */}}
{{- define "starling.toml.subtables" -}}
{{- $name := .name }}
{{- range $k, $v := .table }}
{{- if kindIs "map" $v }}
{{- $sub := printf "%s.%s" $name (include "starling.toml.key" $k) }}
{{- $pairs := include "starling.toml.pairs" $v }}
{{- if or $pairs (not $v) }}

[{{ $sub }}]
{{- $pairs }}
{{- end }}
{{- include "starling.toml.subtables" (dict "name" $sub "table" $v) }}
{{- end }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------------
The broker's configuration file of one node.
dict "ctx" $ "ordinal" N ("common" true: without the per-node values, for
the checksum that restarts pods when shared settings change)
--------------------------------------------------------------------- */}}
{{- define "starling.config" -}}
{{- $ctx := .ctx }}
{{- $v := $ctx.Values }}
{{- $i := int .ordinal }}
{{- $common := .common }}
{{- $tlsSecret := include "starling.tlsSecretName" $ctx -}}
# Generated by the Starling Helm chart ({{ include "starling.chart" $ctx }}) for
# {{ if $common }}every node{{ else }}pod {{ include "starling.fullname" $ctx }}-{{ $i }}{{ end }}. Change values.yaml, not this file.

[node]
{{- if not $common }}
id = {{ add $i 1 }}
{{- end }}
data_dir = "/var/lib/starling"
shutdown_grace = "{{ int $v.shutdown.graceSeconds }}s"
drain_window = "{{ int $v.shutdown.drainWindowSeconds }}s"
{{- range $name := splitList " " (include "starling.listenerNames" $ctx) }}
{{- $l := index $v.listeners $name }}
{{- if $l.enabled }}

[[listeners]]
name = {{ $name | quote }}
bind = {{ include "starling.bind" (dict "ctx" $ctx "port" $l.port) | quote }}
{{- if or (eq $name "ws") (eq $name "wss") }}
websocket = true
websocket_path = {{ $l.path | toJson }}
{{- end }}
{{- if $l.proxyProtocol }}
proxy_protocol = true
proxy_trusted = {{ include "starling.toml.value" $l.proxyTrusted }}
{{- end }}
{{- if or (eq $name "mqtts") (eq $name "wss") }}
[listeners.tls]
cert = "/etc/starling/tls/tls.crt"
key = "/etc/starling/tls/tls.key"
client_auth = {{ $v.tls.clientAuth | quote }}
{{- if ne $v.tls.clientAuth "none" }}
client_ca = "/etc/starling/client-ca/ca.crt"
{{- if $v.tls.crl.secretName }}
crl = "/etc/starling/crl/crl.pem"
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

[cluster]
listen = {{ include "starling.bind" (dict "ctx" $ctx "port" $v.cluster.port) | quote }}
{{- if not $common }}
advertise = "{{ include "starling.podHost" (dict "ctx" $ctx "ordinal" $i) }}:{{ int $v.cluster.port }}"
peers = [
{{- range $j := until (int $v.replicaCount) }}
{{- if ne $j $i }}
  "{{ add $j 1 }}@{{ include "starling.podHost" (dict "ctx" $ctx "ordinal" $j) }}:{{ int $v.cluster.port }}",
{{- end }}
{{- end }}
]
{{- end }}
secret_file = "/etc/starling/cluster/secret"
{{- include "starling.toml.pairs" $v.config.cluster }}

[admin]
listen = {{ include "starling.bind" (dict "ctx" $ctx "port" $v.admin.port) | quote }}
token_file = "/etc/starling/admin/token"

[auth]
policy_file = "/etc/starling/policy/policy.toml"
{{- include "starling.toml.pairs" $v.config.auth }}
{{- range $section := list "limits" "session" "sys" "security" "telemetry" }}
{{- $t := index $v.config $section }}
{{- if $t }}

[{{ $section }}]
{{- include "starling.toml.pairs" $t }}
{{- include "starling.toml.subtables" (dict "name" $section "table" $t) }}
{{- end }}
{{- end }}
{{ end }}

{{/* ---------------------------------------------------------------------
Checks of values that Kubernetes or the broker would refuse later
(a bad value fails `helm install` instead of a crash-looping pod).
--------------------------------------------------------------------- */}}
{{- define "starling.validate" -}}
{{- $v := .Values }}
{{- if lt (int $v.replicaCount) 1 }}
{{- fail "replicaCount must be at least 1" }}
{{- end }}
{{- $any := false }}
{{- $ports := dict }}
{{- $_ := set $ports (toString $v.admin.port) "admin.port" }}
{{- if hasKey $ports (toString $v.cluster.port) }}
{{- fail (printf "cluster.port %v is already used by %s" $v.cluster.port (get $ports (toString $v.cluster.port))) }}
{{- end }}
{{- $_ := set $ports (toString $v.cluster.port) "cluster.port" }}
{{- range $name := splitList " " (include "starling.listenerNames" .) }}
{{- $l := index $v.listeners $name }}
{{- if $l.enabled }}
{{- $any = true }}
{{- if hasKey $ports (toString $l.port) }}
{{- fail (printf "listeners.%s.port %v is already used by %s" $name $l.port (get $ports (toString $l.port))) }}
{{- end }}
{{- $_ := set $ports (toString $l.port) (printf "listeners.%s.port" $name) }}
{{- if and $l.proxyProtocol (not $l.proxyTrusted) }}
{{- fail (printf "listeners.%s.proxyTrusted is required with proxyProtocol (the load balancer's networks)" $name) }}
{{- end }}
{{- if and (hasKey $l "path") (not (hasPrefix "/" (toString $l.path))) }}
{{- fail (printf "listeners.%s.path must start with /" $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $any }}
{{- fail "enable at least one listener (listeners.mqtt/mqtts/ws/wss.enabled)" }}
{{- end }}
{{- if and (include "starling.tlsEnabled" .) (not (include "starling.tlsSecretName" .)) }}
{{- fail "listeners.mqtts/wss need tls.secretName (a kubernetes.io/tls Secret) or tls.certificate.create=true" }}
{{- end }}
{{- if not (has $v.tls.clientAuth (list "none" "optional" "required")) }}
{{- fail "tls.clientAuth must be none, optional or required" }}
{{- end }}
{{- if and $v.tls.crl.secretName (eq $v.tls.clientAuth "none") }}
{{- fail "tls.crl needs tls.clientAuth optional or required (revocation applies to client certificates)" }}
{{- end }}
{{- if and $v.tls.certificate.create (not $v.tls.certificate.issuerRef.name) }}
{{- fail "tls.certificate.create needs tls.certificate.issuerRef.name" }}
{{- end }}
{{- if lt (int $v.shutdown.graceSeconds) 1 }}
{{- fail "shutdown.graceSeconds must be at least 1" }}
{{- end }}
{{- if ge (int $v.shutdown.drainWindowSeconds) (int $v.shutdown.graceSeconds) }}
{{- fail "shutdown.drainWindowSeconds must be shorter than shutdown.graceSeconds (the broker refuses node.drain_window >= node.shutdown_grace)" }}
{{- end }}
{{- if and (not $v.policy.existingConfigMap) (not $v.policy.content) }}
{{- fail "set policy.content or policy.existingConfigMap (without a policy every client is refused)" }}
{{- end }}
{{- if and $v.admin.token.value (lt (len $v.admin.token.value) 16) }}
{{- fail "admin.token.value must be at least 16 characters" }}
{{- end }}
{{- if and $v.cluster.secret.value (lt (len $v.cluster.secret.value) 16) }}
{{- fail "cluster.secret.value must be at least 16 bytes" }}
{{- end }}
{{- range $section, $t := $v.config }}
{{- if not (has $section (list "limits" "session" "sys" "cluster" "auth" "security" "telemetry")) }}
{{- fail (printf "config.%s: not a section the chart renders (limits, session, sys, cluster, auth, security, telemetry); node, listeners, admin and the cluster addresses have their own values" $section) }}
{{- end }}
{{- if not (kindIs "map" $t) }}
{{- fail (printf "config.%s must be a map" $section) }}
{{- end }}
{{- end }}
{{- range $k := list "listen" "advertise" "peers" "secret_file" }}
{{- if hasKey $v.config.cluster $k }}
{{- fail (printf "config.cluster.%s is set by the chart (per pod); use cluster.port / cluster.secret" $k) }}
{{- end }}
{{- end }}
{{- if hasKey $v.config.auth "policy_file" }}
{{- fail "config.auth.policy_file is set by the chart; use policy.content or policy.existingConfigMap" }}
{{- end }}
{{- if not (has $v.podAntiAffinity (list "soft" "hard" "none" "")) }}
{{- fail "podAntiAffinity must be soft, hard or none" }}
{{- end }}
{{- end }}
