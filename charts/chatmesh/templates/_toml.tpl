{{/*
A TOML writer for the binaries' configs. Helm's toToml cannot be used: it
writes every number from a values file as a float (4096.0, 1.048576e+08),
which the binaries' integer fields refuse. Here integral numbers are
written as integers, null values are left out (so a binary default
applies), maps become tables and lists of maps arrays of tables.
*/}}

{{- define "chatmesh.toml" -}}
{{- include "chatmesh.toml.table" (dict "path" (list) "table" .) -}}
{{- end -}}

{{- define "chatmesh.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "chatmesh.toml.path" -}}
{{- $parts := list -}}
{{- range . -}}{{- $parts = append $parts (include "chatmesh.toml.key" .) -}}{{- end -}}
{{- join "." $parts -}}
{{- end -}}

{{- define "chatmesh.toml.isTableArray" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) -}}{{- if kindIs "map" (first .) -}}true{{- end -}}{{- end -}}
{{- end -}}

{{- define "chatmesh.toml.value" -}}
{{- if kindIs "string" . -}}
{{- toJson . -}}
{{- else if kindIs "bool" . -}}
{{- . -}}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) -}}
{{- if eq (float64 .) (floor .) -}}{{- int64 . -}}{{- else -}}{{- . -}}{{- end -}}
{{- else if or (kindIs "int" .) (kindIs "int64" .) (kindIs "int32" .) (kindIs "uint64" .) -}}
{{- . -}}
{{- else if kindIs "slice" . -}}
[{{- range $i, $v := . -}}{{- if $i -}}, {{ end -}}{{- include "chatmesh.toml.value" $v -}}{{- end -}}]
{{- else if kindIs "map" . -}}
{{- $parts := list -}}
{{- range $k := keys . | sortAlpha -}}
{{- $parts = append $parts (printf "%s = %s" (include "chatmesh.toml.key" $k) (include "chatmesh.toml.value" (index $ $k))) -}}
{{- end -}}
{ {{- join ", " $parts -}} }
{{- else -}}
{{- fail (printf "cannot write %v (%s) as TOML" . (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{/* (dict "path" list "table" map): scalars first, then tables, then arrays of tables. */}}
{{- define "chatmesh.toml.table" -}}
{{- $path := .path -}}
{{- $table := .table -}}
{{- range $k := keys $table | sortAlpha -}}
{{- $v := index $table $k -}}
{{- if not (or (kindIs "invalid" $v) (kindIs "map" $v) (include "chatmesh.toml.isTableArray" $v)) }}
{{ include "chatmesh.toml.key" $k }} = {{ include "chatmesh.toml.value" $v }}
{{- end -}}
{{- end -}}
{{- range $k := keys $table | sortAlpha -}}
{{- $v := index $table $k -}}
{{- $sub := append $path $k -}}
{{- if and (kindIs "map" $v) (not (empty $v)) }}

[{{ include "chatmesh.toml.path" $sub }}]
{{- include "chatmesh.toml.table" (dict "path" $sub "table" $v) -}}
{{- else if include "chatmesh.toml.isTableArray" $v -}}
{{- range $item := $v }}

[[{{ include "chatmesh.toml.path" $sub }}]]
{{- include "chatmesh.toml.table" (dict "path" $sub "table" $item) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
