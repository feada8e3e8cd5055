// Command kstatus prints what sigs.k8s.io/cli-utils' kstatus library (the status logic Flux's
// health checks and `kubectl wait`-like tools use) computes for Kubernetes objects.
//
// It reads one JSON object, or a JSON list of them, on stdin and prints one JSON line per object:
// {"status": "Current|InProgress|Failed|Terminating|Unknown", "message": "...", "conditions": [...]}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status     string             `json:"status"`
	Message    string             `json:"message"`
	Conditions []status.Condition `json:"conditions"`
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	var objects []json.RawMessage
	if len(raw) > 0 && raw[0] == '[' {
		err = json.Unmarshal(raw, &objects)
	} else {
		objects = append(objects, raw)
	}
	if err != nil {
		fail("stdin is not a JSON object or list of objects: %v", err)
	}
	out := json.NewEncoder(os.Stdout)
	for _, text := range objects {
		// UnmarshalJSON keeps integers as int64, which kstatus' accessors expect.
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(text); err != nil {
			fail("not a Kubernetes object: %v", err)
		}
		computed, err := status.Compute(obj)
		if err != nil {
			fail("kstatus: %v", err)
		}
		if err := out.Encode(result{string(computed.Status), computed.Message, computed.Conditions}); err != nil {
			fail("writing: %v", err)
		}
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(2)
}
