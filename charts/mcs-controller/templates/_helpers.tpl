{{- define "mcs-controller.name" -}}coredns-mcs-controller{{- end -}}
{{- define "mcs-controller.labels" -}}
app.kubernetes.io/name: {{ include "mcs-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: coredns-mcs
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "mcs-controller.selector" -}}
app.kubernetes.io/name: {{ include "mcs-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "mcs-controller.kubeconfigSecret" -}}
{{- default (printf "%s-kubeconfig" (include "mcs-controller.name" .)) .Values.karmada.existingSecret -}}
{{- end -}}
