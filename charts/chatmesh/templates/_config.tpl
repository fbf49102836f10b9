{{/*
Each binary's configuration as JSON, written into its ConfigMap as TOML.
A component's `config` values are the binary's own sections, passed
through; the chart owns listen addresses, dependencies and anything that
differs per pod or is secret (those arrive as CHATMESH_* variables).
*/}}

{{- define "chatmesh.chat.config" -}}
{{- $c := .Values.chat -}}
{{- $cfg := deepCopy ($c.config | default dict) -}}
{{- $_ := set $cfg "server" (include "chatmesh.serverSection" (list . "chat") | fromJson) -}}
{{- $_ = set $cfg "telemetry" (include "chatmesh.telemetrySection" (list . "chat") | fromJson) -}}
{{- $_ = set $cfg "redis" (include "chatmesh.redisSection" . | fromJson) -}}
{{- $_ = set $cfg "kafka" (include "chatmesh.kafkaSection" . | fromJson) -}}
{{- $_ = set $cfg "directory" (include "chatmesh.directorySection" . | fromJson) -}}
{{- /*
Edits, deletes and reactions look up the message they change, balanced
over every ready storage pod as the gateways' calls are.
*/ -}}
{{- $_ = set $cfg "storage" (printf "dns://%s-headless.%s.svc.cluster.local:%s" (include "chatmesh.component" (list . "storage")) .Release.Namespace (include "chatmesh.grpcPort" .)) -}}
{{- $m := $c.moderation -}}
{{- $moderation := dict -}}
{{- if $m.words -}}
{{- $_ = set $moderation "words_file" "/etc/chatmesh/config/moderation-words.txt" -}}
{{- else if $m.builtinList -}}
{{- $_ = set $moderation "words_file" "/usr/share/chatmesh/moderation-words.txt" -}}
{{- end -}}
{{- if $m.allow -}}
{{- $_ = set $moderation "allow_file" "/etc/chatmesh/config/moderation-allow.txt" -}}
{{- end -}}
{{- if not (kindIs "invalid" $m.reloadInterval) -}}
{{- $_ = set $moderation "reload_interval" $m.reloadInterval -}}
{{- end -}}
{{- $_ = set $cfg "moderation" $moderation -}}
{{- toJson $cfg -}}
{{- end -}}

{{- define "chatmesh.presence.config" -}}
{{- $c := .Values.presence -}}
{{- $cfg := dict -}}
{{- $_ := set $cfg "server" (include "chatmesh.serverSection" (list . "presence") | fromJson) -}}
{{- $_ = set $cfg "telemetry" (include "chatmesh.telemetrySection" (list . "presence") | fromJson) -}}
{{- $_ = set $cfg "redis" (include "chatmesh.redisSection" . | fromJson) -}}
{{- $settings := deepCopy (($c.config | default dict).presence | default dict) -}}
{{- $_ = set $cfg "presence" (merge $settings (dict "group" (include "chatmesh.fullname" .))) -}}
{{- toJson $cfg -}}
{{- end -}}

{{- define "chatmesh.storage.config" -}}
{{- $c := .Values.storage -}}
{{- $cfg := deepCopy ($c.config | default dict) -}}
{{- $_ := set $cfg "server" (include "chatmesh.serverSection" (list . "storage") | fromJson) -}}
{{- $_ = set $cfg "telemetry" (include "chatmesh.telemetrySection" (list . "storage") | fromJson) -}}
{{- $_ = set $cfg "kafka" (include "chatmesh.kafkaSection" . | fromJson) -}}
{{- $_ = set $cfg "directory" (include "chatmesh.directorySection" . | fromJson) -}}
{{- $_ = set $cfg "shards" (include "chatmesh.shardsSection" . | fromJson) -}}
{{- toJson $cfg -}}
{{- end -}}

{{/* The shard map, checked to cover every bucket exactly once. */}}
{{- define "chatmesh.shardsSection" -}}
{{- $s := .Values.shards -}}
{{- if not $s.databases -}}{{- fail "shards.databases: the shard map needs at least one database" -}}{{- end -}}
{{- $buckets := int $s.buckets -}}
{{- $held := 0 -}}
{{- $dbs := list -}}
{{- range $i, $db := $s.databases -}}
{{- $first := int $db.firstBucket -}}
{{- $last := int $db.lastBucket -}}
{{- if or (gt $first $last) (ge $last $buckets) -}}
{{- fail (printf "shards.databases[%d] (%s): buckets %d..%d must be ordered and below shards.buckets (%d)" $i $db.name $first $last $buckets) -}}
{{- end -}}
{{- range $j, $other := $s.databases -}}
{{- if and (lt $j $i) (le (int $other.firstBucket) $last) (ge (int $other.lastBucket) $first) -}}
{{- fail (printf "shards.databases[%d] (%s) overlaps shards.databases[%d] (%s)" $i $db.name $j $other.name) -}}
{{- end -}}
{{- end -}}
{{- $held = add $held (add (sub $last $first) 1) -}}
{{- $entry := include "chatmesh.databaseSection" (list $ $db) | fromJson -}}
{{- $_ := set $entry "name" $db.name -}}
{{- $_ = set $entry "first_bucket" $first -}}
{{- $_ = set $entry "last_bucket" $last -}}
{{- $dbs = append $dbs $entry -}}
{{- end -}}
{{- if ne (int $held) $buckets -}}
{{- fail (printf "shards.databases hold %d of the %d buckets: every bucket needs exactly one database" (int $held) $buckets) -}}
{{- end -}}
{{- toJson (dict "buckets" $buckets "databases" $dbs) -}}
{{- end -}}

{{- define "chatmesh.media.config" -}}
{{- $c := .Values.media -}}
{{- $cfg := deepCopy ($c.config | default dict) -}}
{{- $_ := set $cfg "server" (include "chatmesh.serverSection" (list . "media") | fromJson) -}}
{{- $_ = set $cfg "telemetry" (include "chatmesh.telemetrySection" (list . "media") | fromJson) -}}
{{- $_ = set $cfg "directory" (include "chatmesh.directorySection" . | fromJson) -}}
{{- $s := $c.s3 -}}
{{- if not (and $s.endpoint $s.bucket) -}}{{- fail "media.s3.endpoint and media.s3.bucket are required" -}}{{- end -}}
{{- $_ = set $cfg "store" (dict "kind" "s3" "endpoint" $s.endpoint "region" $s.region "bucket" $s.bucket) -}}
{{- toJson $cfg -}}
{{- end -}}

{{- define "chatmesh.gateway.config" -}}
{{- $c := .Values.gateway -}}
{{- $a := $c.auth -}}
{{- $cfg := deepCopy ($c.config | default dict) -}}
{{- $_ := set $cfg "http_addr" (printf "%s:%d" (include "chatmesh.hostPort" .) (int $c.port)) -}}
{{- $_ = set $cfg "shutdown_grace" (printf "%ds" (int $c.shutdownGraceSeconds)) -}}
{{- $_ = set $cfg "probe_interval" $c.probeInterval -}}
{{- $_ = set $cfg "telemetry" (include "chatmesh.telemetrySection" (list . "gateway") | fromJson) -}}
{{- $_ = set $cfg "redis" (include "chatmesh.redisSection" . | fromJson) -}}
{{- $services := dict -}}
{{- range $name := splitList " " (include "chatmesh.services" .) -}}
{{- $_ := set $services $name (printf "dns://%s-headless.%s.svc.cluster.local:%s" (include "chatmesh.component" (list $ $name)) $.Release.Namespace (include "chatmesh.grpcPort" $)) -}}
{{- end -}}
{{- $_ = set $cfg "services" $services -}}
{{- if not (or $a.hs256SecretKey $a.rs256PublicKeyKeys $a.jwksKey) -}}
{{- fail "gateway.auth: set hs256SecretKey, rs256PublicKeyKeys or jwksKey, or no client can authenticate" -}}
{{- end -}}
{{- if and $a.devTokens (not $a.hs256SecretKey) -}}
{{- fail "gateway.auth.devTokens signs tokens with the HS256 secret: set gateway.auth.hs256SecretKey" -}}
{{- end -}}
{{- $auth := dict "leeway" $a.leeway "dev_tokens" $a.devTokens -}}
{{- with $a.issuer -}}{{- $_ := set $auth "issuer" . -}}{{- end -}}
{{- with $a.audience -}}{{- $_ := set $auth "audience" . -}}{{- end -}}
{{- $pems := list -}}
{{- range $a.rs256PublicKeyKeys -}}{{- $pems = append $pems (printf "/etc/chatmesh/secrets/%s" .) -}}{{- end -}}
{{- if $pems -}}{{- $_ := set $auth "rs256_public_keys" $pems -}}{{- end -}}
{{- with $a.jwksKey -}}{{- $_ := set $auth "jwks_file" (printf "/etc/chatmesh/secrets/%s" .) -}}{{- end -}}
{{- $_ = set $cfg "auth" $auth -}}
{{- $routing := deepCopy ($cfg.routing | default dict) -}}
{{- $_ = set $cfg "routing" (merge $routing (dict "cluster" (include "chatmesh.fullname" .))) -}}
{{- toJson $cfg -}}
{{- end -}}

{{/* The routing mode the gateways run in. */}}
{{- define "chatmesh.gateway.mode" -}}
{{- ((.Values.gateway.config | default dict).routing | default dict).mode | default "redirect" -}}
{{- end -}}

{{/* The largest number of gateway pods there can be: per-pod objects go up to it. */}}
{{- define "chatmesh.gateway.maxReplicas" -}}
{{- $c := .Values.gateway -}}
{{- if $c.autoscaling.enabled -}}{{- max (int $c.replicas) (int $c.autoscaling.maxReplicas) -}}{{- else -}}{{- int $c.replicas -}}{{- end -}}
{{- end -}}

{{/* Whether each gateway pod gets a Service of its own. */}}
{{- define "chatmesh.gateway.podServices" -}}
{{- $c := .Values.gateway -}}
{{- if or $c.podServices.enabled (and (eq (include "chatmesh.gateway.mode" .) "redirect") (or $c.ingress.enabled $c.httpRoute.enabled)) -}}true{{- end -}}
{{- end -}}

{{/* The publicUrl template, defaulting to the pod's in-cluster address. */}}
{{- define "chatmesh.gateway.publicUrl" -}}
{{- $c := .Values.gateway -}}
{{- $url := $c.publicUrl | default (printf "ws://{pod}.%s-headless.%s.svc.cluster.local:%d" (include "chatmesh.component" (list . "gateway")) .Release.Namespace (int $c.port)) -}}
{{- if and (eq (include "chatmesh.gateway.mode" .) "redirect") (not (contains "{pod}" $url)) -}}
{{- fail "gateway.publicUrl must contain {pod} in redirect mode: a redirect sends a client to one pod, so each pod needs its own address" -}}
{{- end -}}
{{- $url -}}
{{- end -}}

{{/* (list $ ordinal) -> the host of one pod's public URL. */}}
{{- define "chatmesh.gateway.podHost" -}}
{{- $root := index . 0 -}}
{{- $pod := printf "%s-%d" (include "chatmesh.component" (list $root "gateway")) (int (index . 1)) -}}
{{- regexReplaceAll "^[a-z]+://([^/:]+).*$" (include "chatmesh.gateway.publicUrl" $root | replace "{pod}" $pod) "${1}" -}}
{{- end -}}
