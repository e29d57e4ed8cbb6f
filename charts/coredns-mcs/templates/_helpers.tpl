{{- define "coredns-mcs.name" -}}coredns-mcs{{- end -}}
{{- define "coredns-mcs.labels" -}}
app.kubernetes.io/name: {{ include "coredns-mcs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: coredns-mcs
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "coredns-mcs.selector" -}}
app.kubernetes.io/name: {{ include "coredns-mcs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "coredns-mcs.mode" -}}
{{- if not (has .Values.mode (list "beside" "replace")) -}}
{{- fail (printf "mode must be beside or replace, not %q" .Values.mode) -}}
{{- end -}}
{{- .Values.mode -}}
{{- end -}}
{{- define "coredns-mcs.multicluster" -}}
multicluster {
    ttl {{ .Values.ttl }}
    startup_timeout 5s
    {{- with .Values.clusterID }}
    clusterid {{ . }}
    {{- end }}
}
{{- end -}}
