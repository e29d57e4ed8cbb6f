package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// reportStatus asks for the pod's status to be brought in line with its containers' processes.
func (a *agent) reportStatus(key string) { a.statusQ.Add(key) }

func (a *agent) statusLoop(ctx context.Context) {
	for {
		key, quit := a.statusQ.Get()
		if quit {
			return
		}
		if err := a.writeStatus(ctx, key); err != nil {
			if !apierrors.IsConflict(err) {
				klog.Errorf("pod %s: status: %v (retrying)", key, err)
			}
			a.statusQ.AddRateLimited(key)
		} else {
			a.statusQ.Forget(key)
		}
		a.statusQ.Done(key)
	}
}

// writeStatus writes what the processes say into the pod's status, as the kubelet does: a
// container is ready while its process runs; a container that ran to its end (restartPolicy Never,
// or OnFailure with exit 0) is terminated with its exit code, and when every container is, the pod
// is Succeeded or Failed. kwok keeps playing the rest (Pending → Running, the node, deletion), and
// containers of images that run no process stay as kwok reports them.
func (a *agent) writeStatus(ctx context.Context, key string) error {
	a.mu.Lock()
	sb := a.sandboxes[key]
	a.mu.Unlock()
	if sb == nil || len(sb.containers) == 0 {
		return nil
	}
	ns, name, _ := strings.Cut(key, "/")
	pod, err := a.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if string(pod.UID) != sb.uid || pod.DeletionTimestamp != nil {
		return nil
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return nil
	case corev1.PodPending: // kwok has not made it Running yet; its stage would overwrite ours
		a.statusQ.AddAfter(key, 200*time.Millisecond)
		return nil
	}
	st := pod.Status.DeepCopy()
	prev := map[string]corev1.ContainerStatus{}
	for _, cs := range st.ContainerStatuses {
		prev[cs.Name] = cs
	}
	st.ContainerStatuses = st.ContainerStatuses[:0]
	ready, finished, failed := true, true, false
	for _, spec := range pod.Spec.Containers {
		cs := prev[spec.Name]
		c := sb.containers[spec.Name]
		if c == nil { // no process: as kwok reports it, and never finished
			finished = false
			ready = ready && cs.Ready
			st.ContainerStatuses = append(st.ContainerStatuses, cs)
			continue
		}
		cs = c.status(cs)
		ready = ready && cs.Ready
		done, code := c.finished()
		finished = finished && done
		failed = failed || (done && code != 0)
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	if finished {
		st.Phase = corev1.PodSucceeded
		if failed {
			st.Phase = corev1.PodFailed
		}
	}
	for _, t := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
		setCondition(st, t, ready)
	}
	if equality.Semantic.DeepEqual(st, &pod.Status) {
		return nil
	}
	pod.Status = *st
	if _, err := a.kube.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return err
	}
	klog.V(2).Infof("pod %s: phase %s, ready %v", key, st.Phase, ready)
	return nil
}

func setCondition(st *corev1.PodStatus, t corev1.PodConditionType, ok bool) {
	want := corev1.ConditionFalse
	if ok {
		want = corev1.ConditionTrue
	}
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			if st.Conditions[i].Status != want {
				st.Conditions[i].Status, st.Conditions[i].LastTransitionTime = want, metav1.Now()
				st.Conditions[i].Reason = ""
				if !ok {
					st.Conditions[i].Reason = "ContainersNotReady"
				}
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: want, LastTransitionTime: metav1.Now()})
}

// containerEnv is the container's environment as the kubelet builds it (envFrom, then env, with
// $(VAR) references to earlier variables expanded), on top of PATH, HOME and HOSTNAME.
func (a *agent) containerEnv(ctx context.Context, pod *corev1.Pod, c corev1.Container) ([]string, map[string]string, error) {
	host := pod.Name
	if pod.Spec.Hostname != "" {
		host = pod.Spec.Hostname
	}
	vars := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "HOSTNAME": host}
	order := []string{"PATH", "HOME", "HOSTNAME"}
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, from := range c.EnvFrom {
		data, err := a.sourceData(ctx, pod.Namespace, from.ConfigMapRef, from.SecretRef)
		if err != nil {
			return nil, nil, err
		}
		for k, v := range data {
			set(from.Prefix+k, v)
		}
	}
	for _, e := range c.Env {
		v := expand(e.Value, vars)
		if f := e.ValueFrom; f != nil {
			switch {
			case f.FieldRef != nil:
				v = fieldValue(pod, f.FieldRef.FieldPath)
			case f.ConfigMapKeyRef != nil:
				r := f.ConfigMapKeyRef
				data, err := a.sourceData(ctx, pod.Namespace, &corev1.ConfigMapEnvSource{LocalObjectReference: r.LocalObjectReference, Optional: r.Optional}, nil)
				if err != nil {
					return nil, nil, err
				}
				if _, ok := data[r.Key]; !ok && (r.Optional == nil || !*r.Optional) {
					return nil, nil, fmt.Errorf("configmap %s has no key %q", r.Name, r.Key)
				}
				v = data[r.Key]
			case f.SecretKeyRef != nil:
				r := f.SecretKeyRef
				data, err := a.sourceData(ctx, pod.Namespace, nil, &corev1.SecretEnvSource{LocalObjectReference: r.LocalObjectReference, Optional: r.Optional})
				if err != nil {
					return nil, nil, err
				}
				if _, ok := data[r.Key]; !ok && (r.Optional == nil || !*r.Optional) {
					return nil, nil, fmt.Errorf("secret %s has no key %q", r.Name, r.Key)
				}
				v = data[r.Key]
			}
		}
		set(e.Name, v)
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env, vars, nil
}

// sourceData reads a ConfigMap's or Secret's data; a missing optional one is empty.
func (a *agent) sourceData(ctx context.Context, ns string, cm *corev1.ConfigMapEnvSource, sec *corev1.SecretEnvSource) (map[string]string, error) {
	out := map[string]string{}
	switch {
	case cm != nil:
		o, err := a.kube.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && cm.Optional != nil && *cm.Optional {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("configmap %s: %w", cm.Name, err)
		}
		for k, v := range o.Data {
			out[k] = v
		}
	case sec != nil:
		o, err := a.kube.CoreV1().Secrets(ns).Get(ctx, sec.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && sec.Optional != nil && *sec.Optional {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", sec.Name, err)
		}
		for k, v := range o.Data {
			out[k] = string(v)
		}
	}
	return out, nil
}
