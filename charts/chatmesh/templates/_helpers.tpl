{{/* Names, labels and the image. */}}

{{- define "chatmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's prefix for every object; short enough for pod names with ordinals. */}}
{{- define "chatmesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* (list $ "chat") -> "<fullname>-chat" */}}
{{- define "chatmesh.component" -}}
{{- printf "%s-%s" (include "chatmesh.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{- define "chatmesh.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "chatmesh.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* (list $ "chat") */}}
{{- define "chatmesh.labels" -}}
{{- $root := index . 0 -}}
{{ include "chatmesh.selectorLabels" . }}
app.kubernetes.io/part-of: chatmesh
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "chatmesh.image" -}}
{{- $i := .Values.image -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $i.repository $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $i.repository (default .Chart.AppVersion $i.tag) -}}
{{- end -}}
{{- end -}}

{{- define "chatmesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "chatmesh.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The four gRPC services, in the order every loop uses. */}}
{{- define "chatmesh.services" -}}
chat presence storage media
{{- end -}}

{{/* Fixed ports inside the pods: the chart sets the listen addresses. */}}
{{- define "chatmesh.grpcPort" -}}50051{{- end -}}
{{- define "chatmesh.adminPort" -}}9090{{- end -}}

{{/* ---------------------------------------------------------- secrets */}}

{{- define "chatmesh.secretName" -}}
{{- default (printf "%s-secrets" (include "chatmesh.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{/*
(list $ "key" "values.path"): fails unless the Secret the chart makes holds
the key. With existingSecret the kubelet checks when the pod starts.
*/}}
{{- define "chatmesh.requireKey" -}}
{{- $root := index . 0 -}}
{{- $key := index . 1 -}}
{{- if and (not $root.Values.existingSecret) (not (hasKey $root.Values.secrets.data $key)) -}}
{{- fail (printf "%s names the Secret key %q, which secrets.data does not hold: add it there, or set existingSecret" (index . 2) $key) -}}
{{- end -}}
{{- end -}}

{{/* (list $ "ENV_NAME" "key" "values.path"): an env var from the Secret. */}}
{{- define "chatmesh.secretEnv" -}}
{{- include "chatmesh.requireKey" (list (index . 0) (index . 2) (index . 3)) -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "chatmesh.secretName" (index . 0) }}
      key: {{ index . 2 }}
{{- end -}}

{{/* ------------------------------------------------ shared TOML sections */}}

{{/* (list $ "chat") -> JSON of the [server] section. */}}
{{- define "chatmesh.serverSection" -}}
{{- $root := index . 0 -}}
{{- $c := index $root.Values (index . 1) -}}
{{- $own := (($c.config | default dict).server | default dict) -}}
{{- toJson (merge (dict
  "grpc_addr" (printf "%s:%s" (include "chatmesh.hostPort" $root) (include "chatmesh.grpcPort" $root))
  "admin_addr" (printf "%s:%s" (include "chatmesh.hostPort" $root) (include "chatmesh.adminPort" $root))
  "shutdown_grace" (printf "%ds" (int $c.shutdownGraceSeconds))
  "probe_interval" $c.probeInterval) (deepCopy $own)) -}}
{{- end -}}

{{/* The listen host as it goes before ":port" (IPv6 literals keep their brackets). */}}
{{- define "chatmesh.hostPort" -}}
{{- .Values.listenHost -}}
{{- end -}}

{{/* (list $ "chat") */}}
{{- define "chatmesh.telemetrySection" -}}
{{- $root := index . 0 -}}
{{- $c := index $root.Values (index . 1) -}}
{{- $t := dict "log" (default $root.Values.telemetry.log $c.logLevel) "json" $root.Values.telemetry.json -}}
{{- with $root.Values.telemetry.otlpEndpoint -}}{{- $_ := set $t "otlp_endpoint" . -}}{{- end -}}
{{- toJson $t -}}
{{- end -}}

{{- define "chatmesh.redisSection" -}}
{{- $r := .Values.redis -}}
{{- if not $r.nodes -}}{{- fail "redis.nodes: at least one seed node of the Redis Cluster is required" -}}{{- end -}}
{{- toJson (dict "nodes" $r.nodes "connect_timeout" $r.connectTimeout "response_timeout" $r.responseTimeout "topology_refresh" $r.topologyRefresh) -}}
{{- end -}}

{{- define "chatmesh.kafkaSection" -}}
{{- $k := .Values.kafka -}}
{{- if not $k.brokers -}}{{- fail "kafka.brokers: at least one broker is required" -}}{{- end -}}
{{- toJson (dict "brokers" $k.brokers "topic" $k.topic "properties" $k.properties) -}}
{{- end -}}

{{/*
(list $ db) -> the database's settings with the postgres defaults filled in:
user, passwordKey, poolSize, and its URL without a password.
*/}}
{{- define "chatmesh.database" -}}
{{- $p := (index . 0).Values.postgres -}}
{{- $db := index . 1 -}}
{{- $user := default $p.user $db.user -}}
{{- $key := $p.passwordKey -}}
{{- if hasKey $db "passwordKey" -}}{{- $key = $db.passwordKey -}}{{- end -}}
{{- toJson (dict
  "user" $user
  "passwordKey" $key
  "poolSize" (default $p.poolSize $db.poolSize)
  "address" (printf "%s:%d/%s" $db.host (int (default 5432 $db.port)) $db.database)) -}}
{{- end -}}

{{/* (list $ db) -> {url, pool_size, connect_timeout}; the password comes from the environment. */}}
{{- define "chatmesh.databaseSection" -}}
{{- $d := include "chatmesh.database" . | fromJson -}}
{{- toJson (dict
  "url" (printf "postgres://%s@%s" $d.user $d.address)
  "pool_size" $d.poolSize
  "connect_timeout" (index . 0).Values.postgres.connectTimeout) -}}
{{- end -}}

{{- define "chatmesh.directorySection" -}}
{{- if not .Values.postgres.directory.host -}}{{- fail "postgres.directory.host: the directory database's server is required" -}}{{- end -}}
{{- include "chatmesh.databaseSection" (list . .Values.postgres.directory) -}}
{{- end -}}

{{/*
(list $ db "ENVSUFFIX" "CHATMESH_..._URL" "values.path"): when the database
has a password, the variable holding it and the URL override that splices
it in. The kubelet expands $(VAR) from the variables before it, so the
password never appears in the pod spec.
*/}}
{{- define "chatmesh.databaseEnv" -}}
{{- $root := index . 0 -}}
{{- $d := include "chatmesh.database" (list $root (index . 1)) | fromJson -}}
{{- if $d.passwordKey -}}
{{- $var := printf "DB_PASSWORD_%s" (index . 2) -}}
{{ include "chatmesh.secretEnv" (list $root $var $d.passwordKey (printf "%s.passwordKey" (index . 4))) }}
- name: {{ index . 3 }}
  value: {{ printf "postgres://%s:$(%s)@%s" $d.user $var $d.address | quote }}
{{- end -}}
{{- end -}}

{{/* Variables every binary that talks to Redis or Kafka needs for their credentials. */}}
{{- define "chatmesh.redisEnv" -}}
{{- $r := .Values.redis -}}
{{- if $r.passwordKey -}}
{{ include "chatmesh.secretEnv" (list . "REDIS_PASSWORD" $r.passwordKey "redis.passwordKey") }}
{{- $nodes := list -}}
{{- range $r.nodes -}}
{{- $nodes = append $nodes (regexReplaceAll "^(rediss?://)(?:[^@/]*@)?" . "${1}:$(REDIS_PASSWORD)@") -}}
{{- end }}
- name: CHATMESH_REDIS__NODES
  value: {{ join "," $nodes | quote }}
{{- end -}}
{{- end -}}

{{- define "chatmesh.kafkaEnv" -}}
{{- with .Values.kafka.saslPasswordKey -}}
{{ include "chatmesh.secretEnv" (list $ "CHATMESH_KAFKA__PROPERTIES__sasl.password" . "kafka.saslPasswordKey") }}
{{- end -}}
{{- end -}}

{{/* ----------------------------------------------------------- pods */}}

{{/* Grace: the binary's drain, plus the preStop delay, plus a margin for exit. */}}
{{- define "chatmesh.terminationGrace" -}}
{{- $c := index . 1 -}}
{{- $floor := add (int $c.shutdownGraceSeconds) (int $c.preStopSeconds) -}}
{{- if kindIs "invalid" $c.terminationGracePeriodSeconds -}}
{{- add $floor 5 -}}
{{- else if le (int $c.terminationGracePeriodSeconds) $floor -}}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must exceed shutdownGraceSeconds + preStopSeconds (%d), or in-flight work is killed" (index . 0) (int $c.terminationGracePeriodSeconds) $floor) -}}
{{- else -}}
{{- int $c.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/*
(list $ component): a preStop delay. Kubernetes 1.30 and later sleep
natively; before that the image (which has no shell) sleeps with
chatmesh-healthcheck.
*/}}
{{- define "chatmesh.lifecycle" -}}
{{- $root := index . 0 -}}
{{- $c := index . 1 -}}
{{- if gt (int $c.preStopSeconds) 0 -}}
lifecycle:
  preStop:
    {{- if semverCompare ">=1.30.0-0" $root.Capabilities.KubeVersion.Version }}
    sleep:
      seconds: {{ int $c.preStopSeconds }}
    {{- else }}
    exec:
      command: ["/usr/local/bin/chatmesh-healthcheck", "--sleep", {{ int $c.preStopSeconds | quote }}]
    {{- end }}
{{- end -}}
{{- end -}}

{{/*
(list component portName): startup and liveness on /livez, readiness on
/readyz. /livez answers as long as the process runs, so a dependency
outage only takes pods out of their Services, never restarts them.
*/}}
{{- define "chatmesh.probes" -}}
{{- $c := index . 0 -}}
{{- $port := index . 1 -}}
{{- $p := $c.probes | default dict -}}
startupProbe:
  httpGet:
    path: /livez
    port: {{ $port }}
  {{- toYaml (mergeOverwrite (dict "periodSeconds" 2 "timeoutSeconds" 2 "failureThreshold" 30) ($p.startup | default dict)) | nindent 2 }}
livenessProbe:
  httpGet:
    path: /livez
    port: {{ $port }}
  {{- toYaml (mergeOverwrite (dict "periodSeconds" 10 "timeoutSeconds" 3 "failureThreshold" 3) ($p.liveness | default dict)) | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ $port }}
  {{- toYaml (mergeOverwrite (dict "periodSeconds" 5 "timeoutSeconds" 3 "failureThreshold" 2 "successThreshold" 1) ($p.readiness | default dict)) | nindent 2 }}
{{- end -}}

{{/* (list $ component): scheduling and the pod-wide settings. */}}
{{- define "chatmesh.podCommon" -}}
{{- $root := index . 0 -}}
{{- $c := index . 1 -}}
serviceAccountName: {{ include "chatmesh.serviceAccountName" $root }}
# The binaries never call the Kubernetes API.
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* (list $ "chat"): the pod template's annotations, with checksums that roll pods on change. */}}
{{- define "chatmesh.podAnnotations" -}}
{{- $root := index . 0 -}}
{{- $c := index $root.Values (index . 1) -}}
checksum/config: {{ include "chatmesh.configToml" . | sha256sum }}
{{- if not $root.Values.existingSecret }}
checksum/secret: {{ toJson $root.Values.secrets.data | sha256sum }}
{{- end }}
{{- with $c.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* (list $ "chat"): the component's TOML, as its ConfigMap holds it. */}}
{{- define "chatmesh.configToml" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
# chatmesh-{{ $name }} configuration, rendered by the chatmesh chart.
# Per-pod fields and secrets arrive as CHATMESH_* environment overrides.
{{ include "chatmesh.toml" (include (printf "chatmesh.%s.config" $name) $root | fromJson) | trim }}
{{- end -}}

{{/* Volumes every pod mounts: its config, and /tmp (the root is read-only). */}}
{{- define "chatmesh.volumeMounts" -}}
- name: config
  mountPath: /etc/chatmesh/config
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "chatmesh.volumes" -}}
{{- $root := index . 0 -}}
- name: config
  configMap:
    name: {{ include "chatmesh.component" . }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{/* (list $ "chat"): variables every container gets first, so later values may use $(POD_NAME). */}}
{{- define "chatmesh.baseEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: CHATMESH_CONFIG
  value: /etc/chatmesh/config/config.toml
{{- end -}}

{{/* (list $ component): PodDisruptionBudget spec fields. */}}
{{- define "chatmesh.pdbSpec" -}}
{{- $name := index . 0 -}}
{{- $p := index . 1 -}}
{{- $min := not (kindIs "invalid" $p.minAvailable) -}}
{{- $max := not (kindIs "invalid" $p.maxUnavailable) -}}
{{- if and $min $max -}}
{{- fail (printf "%s.pdb: set minAvailable or maxUnavailable, not both (a PodDisruptionBudget takes one)" $name) -}}
{{- else if $min -}}
minAvailable: {{ $p.minAvailable }}
{{- else if $max -}}
maxUnavailable: {{ $p.maxUnavailable }}
{{- else -}}
maxUnavailable: 1
{{- end -}}
{{- end -}}

{{/*
Static consumer-group membership: the pod's stable name is the storage
instance's group.instance.id, so a restarted pod takes its partitions back
without a rebalance.
*/}}
{{- define "chatmesh.storage.instanceEnv" -}}
- name: CHATMESH_INSTANCE_ID
  value: $(POD_NAME)
{{- end -}}
