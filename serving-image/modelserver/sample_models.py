"""Small sample model bundles for tests, the benchmark and demos, built from generated data.

Needs the ``samples`` extra (skl2onnx, onnx, tflite, flatbuffers). Nothing is downloaded: the data is
generated, the sklearn model trained here, the ONNX file converted from it with skl2onnx, and the
TFLite int8 file written as a flatbuffer directly (no TensorFlow needed for a dense+softmax model).

    python -m modelserver.sample_models /tmp/models            # sklearn, onnx and tflite bundles
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .artifact import sha256_of

FEATURES = ("amount", "age", "tenure", "score")
CLASSES = ("low", "medium", "high")


@dataclass(frozen=True)
class Bundle:
    model_path: Path
    sha256: str

    def env(self, name: str = "risk", version: str = "1") -> dict[str, str]:
        return {
            "MODEL_PATH": str(self.model_path),
            "MODEL_SHA256": self.sha256,
            "MODEL_NAME": name,
            "MODEL_VERSION": version,
        }


def dataset(n: int = 600, seed: int = 0) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.str_]]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n,
        n_features=len(FEATURES),
        n_informative=3,
        n_redundant=0,
        n_classes=len(CLASSES),
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=seed,
    )
    # Unlike scales, as real features have, within one int8 input range for the TFLite sample.
    x = x * np.array([3.0, 2.0, 1.5, 1.0]) + np.array([10.0, 5.0, 2.0, 0.0])
    return x, np.array(CLASSES)[y]


def train(seed: int = 0) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = dataset(seed=seed)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)


def _write_sidecars(
    d: Path,
    x: npt.NDArray[np.float64],
    labels: list[Any],
    proba: npt.NDArray[Any],
    atol: float,
    classes: tuple[str, ...],
) -> None:
    (d / "schema.json").write_text(
        json.dumps({"features": list(FEATURES), "classes": list(classes)}, indent=2)
    )
    (d / "examples.json").write_text(
        json.dumps(
            {
                "examples": [
                    {
                        "summary": "one applicant, values in feature order",
                        "instances": [x[0].round(3).tolist()],
                    },
                    {
                        "summary": "two applicants, by feature name",
                        "instances": [dict(zip(FEATURES, r.round(3).tolist(), strict=True)) for r in x[1:3]],
                    },
                ]
            },
            indent=2,
        )
    )
    (d / "golden.json").write_text(
        json.dumps(
            {"instances": x.tolist(), "predictions": labels, "probabilities": proba.tolist(), "atol": atol},
            indent=2,
        )
    )


def sklearn_bundle(d: Path, seed: int = 0) -> Bundle:
    import joblib

    d.mkdir(parents=True, exist_ok=True)
    est = train(seed)
    path = d / "model.joblib"
    joblib.dump(est, path)
    x = dataset(seed=seed)[0][:8]
    proba = est.predict_proba(x)
    labels = est.classes_[proba.argmax(axis=1)].tolist()
    _write_sidecars(d, x, labels, proba, atol=1e-9, classes=tuple(est.classes_))
    return Bundle(path, sha256_of(path))


def onnx_bundle(d: Path, seed: int = 0) -> Bundle:
    import onnxruntime as ort
    from skl2onnx import to_onnx

    d.mkdir(parents=True, exist_ok=True)
    est = train(seed)
    x = dataset(seed=seed)[0]
    onx = to_onnx(est, x[:1].astype(np.float32), options={id(est): {"zipmap": False}}, target_opset=17)
    path = d / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels, proba = sess.run(None, {sess.get_inputs()[0].name: x[:8].astype(np.float32)})
    _write_sidecars(
        d, x[:8], np.asarray(labels).tolist(), np.asarray(proba), atol=1e-5, classes=tuple(est.classes_)
    )
    return Bundle(path, sha256_of(path))


def _affine_quant(lo: float, hi: float) -> tuple[float, int]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    return scale, int(np.clip(round(-128 - lo / scale), -128, 127))


def tflite_int8_bytes(
    weights: npt.NDArray[np.float64], bias: npt.NDArray[np.float64], x_train: npt.NDArray[np.float64]
) -> bytes:
    """A fully int8-quantized ``softmax(x @ weights.T + bias)`` as a TFLite flatbuffer.

    Quantization follows TFLite's int8 spec: per-tensor affine activations, symmetric weights,
    int32 bias at scale input*weight, softmax output at scale 1/256 with zero point -128.
    """
    import flatbuffers
    import tflite as t

    n_out, n_in = weights.shape
    s_in, zp_in = _affine_quant(float(x_train.min()), float(x_train.max()))
    s_w = float(np.abs(weights).max()) / 127.0
    wq = np.clip(np.round(weights / s_w), -127, 127).astype(np.int8)
    bq = np.round(bias / (s_in * s_w)).astype(np.int32)
    logits = x_train @ weights.T + bias
    margin = 0.1 * float(logits.max() - logits.min())
    s_l, zp_l = _affine_quant(float(logits.min()) - margin, float(logits.max()) + margin)

    b = flatbuffers.Builder(4096)

    def int_vector(start: Any, values: list[int], prepend: Any) -> int:
        start(b, len(values))
        for v in reversed(values):
            prepend(v)
        return int(b.EndVector())

    def buffer(data: bytes | None) -> int:
        vec = b.CreateByteVector(data) if data else None
        t.BufferStart(b)
        if vec is not None:
            t.BufferAddData(b, vec)
        return int(t.BufferEnd(b))

    def quant(scale: float, zero: int) -> int:
        t.QuantizationParametersStartScaleVector(b, 1)
        b.PrependFloat32(scale)
        sv = b.EndVector()
        t.QuantizationParametersStartZeroPointVector(b, 1)
        b.PrependInt64(zero)
        zv = b.EndVector()
        t.QuantizationParametersStart(b)
        t.QuantizationParametersAddScale(b, sv)
        t.QuantizationParametersAddZeroPoint(b, zv)
        return int(t.QuantizationParametersEnd(b))

    def tensor(name: str, shape: list[int], ttype: int, buf: int, q: int, dynamic: bool) -> int:
        nm = b.CreateString(name)
        sh = int_vector(t.TensorStartShapeVector, shape, b.PrependInt32)
        sig = int_vector(
            t.TensorStartShapeSignatureVector, [-1, *shape[1:]] if dynamic else shape, b.PrependInt32
        )
        t.TensorStart(b)
        t.TensorAddShape(b, sh)
        t.TensorAddShapeSignature(b, sig)
        t.TensorAddType(b, ttype)
        t.TensorAddBuffer(b, buf)
        t.TensorAddName(b, nm)
        t.TensorAddQuantization(b, q)
        return int(t.TensorEnd(b))

    tensors = [
        tensor("input", [1, n_in], t.TensorType.INT8, 1, quant(s_in, zp_in), True),
        tensor("weights", [n_out, n_in], t.TensorType.INT8, 2, quant(s_w, 0), False),
        tensor("bias", [n_out], t.TensorType.INT32, 3, quant(s_in * s_w, 0), False),
        tensor("logits", [1, n_out], t.TensorType.INT8, 4, quant(s_l, zp_l), True),
        tensor("probabilities", [1, n_out], t.TensorType.INT8, 5, quant(1.0 / 256.0, -128), True),
    ]

    t.FullyConnectedOptionsStart(b)
    t.FullyConnectedOptionsAddFusedActivationFunction(b, t.ActivationFunctionType.NONE)
    fc_opts = t.FullyConnectedOptionsEnd(b)
    t.SoftmaxOptionsStart(b)
    t.SoftmaxOptionsAddBeta(b, 1.0)
    sm_opts = t.SoftmaxOptionsEnd(b)

    def operator(opcode: int, inputs: list[int], outputs: list[int], opt_type: int, opts: int) -> int:
        iv = int_vector(t.OperatorStartInputsVector, inputs, b.PrependInt32)
        ov = int_vector(t.OperatorStartOutputsVector, outputs, b.PrependInt32)
        t.OperatorStart(b)
        t.OperatorAddOpcodeIndex(b, opcode)
        t.OperatorAddInputs(b, iv)
        t.OperatorAddOutputs(b, ov)
        t.OperatorAddBuiltinOptionsType(b, opt_type)
        t.OperatorAddBuiltinOptions(b, opts)
        return int(t.OperatorEnd(b))

    ops = [
        operator(0, [0, 1, 2], [3], t.BuiltinOptions.FullyConnectedOptions, fc_opts),
        operator(1, [3], [4], t.BuiltinOptions.SoftmaxOptions, sm_opts),
    ]

    def offsets(start: Any, items: list[int]) -> int:
        start(b, len(items))
        for o in reversed(items):
            b.PrependUOffsetTRelative(o)
        return int(b.EndVector())

    tensors_v = offsets(t.SubGraphStartTensorsVector, tensors)
    inputs_v = int_vector(t.SubGraphStartInputsVector, [0], b.PrependInt32)
    outputs_v = int_vector(t.SubGraphStartOutputsVector, [4], b.PrependInt32)
    ops_v = offsets(t.SubGraphStartOperatorsVector, ops)
    sg_name = b.CreateString("main")
    t.SubGraphStart(b)
    t.SubGraphAddTensors(b, tensors_v)
    t.SubGraphAddInputs(b, inputs_v)
    t.SubGraphAddOutputs(b, outputs_v)
    t.SubGraphAddOperators(b, ops_v)
    t.SubGraphAddName(b, sg_name)
    subgraph = t.SubGraphEnd(b)

    codes = []
    for code, version in ((t.BuiltinOperator.FULLY_CONNECTED, 4), (t.BuiltinOperator.SOFTMAX, 2)):
        t.OperatorCodeStart(b)
        t.OperatorCodeAddDeprecatedBuiltinCode(b, code)
        t.OperatorCodeAddBuiltinCode(b, code)
        t.OperatorCodeAddVersion(b, version)
        codes.append(t.OperatorCodeEnd(b))

    buffers = [
        buffer(None),
        buffer(None),
        buffer(wq.tobytes()),
        buffer(bq.astype("<i4").tobytes()),
        buffer(None),
        buffer(None),
    ]
    buffers_v = offsets(t.ModelStartBuffersVector, buffers)
    codes_v = offsets(t.ModelStartOperatorCodesVector, codes)
    subgraphs_v = offsets(t.ModelStartSubgraphsVector, [subgraph])
    desc = b.CreateString("modelserver sample: int8 dense + softmax")
    t.ModelStart(b)
    t.ModelAddVersion(b, 3)
    t.ModelAddOperatorCodes(b, codes_v)
    t.ModelAddSubgraphs(b, subgraphs_v)
    t.ModelAddDescription(b, desc)
    t.ModelAddBuffers(b, buffers_v)
    b.Finish(t.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def tflite_bundle(d: Path, seed: int = 0, edgetpu_standin: bool = False) -> Bundle:
    """The sklearn model's linear layer folded with its scaler and quantized to int8.

    With ``edgetpu_standin`` it also writes ``model_edgetpu.tflite``: NOT a compiled Edge TPU model
    (edgetpu_compiler is not installable here) but a file in its place, so the naming, checksum and
    CPU-fallback logic can be exercised; the returned bundle then points at it.
    """
    from ai_edge_litert.interpreter import Interpreter

    d.mkdir(parents=True, exist_ok=True)
    est = train(seed)
    scaler, clf = est[0], est[-1]
    w = clf.coef_ / scaler.scale_
    bias = clf.intercept_ - (clf.coef_ * scaler.mean_ / scaler.scale_).sum(axis=1)
    x = dataset(seed=seed)[0]
    path = d / "model.tflite"
    path.write_bytes(tflite_int8_bytes(w, bias, x))
    # The golden outputs are the quantized model's own (the test suite separately checks that it
    # agrees with the float sklearn model).
    interp = Interpreter(model_path=str(path))
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], [8, x.shape[1]])
    interp.allocate_tensors()
    s, z = inp["quantization"]
    interp.set_tensor(inp["index"], np.clip(np.round(x[:8] / s) + z, -128, 127).astype(np.int8))
    interp.invoke()
    os_, oz = out["quantization"]
    proba = (interp.get_tensor(out["index"]).astype(np.float64) - oz) * os_
    labels = [str(clf.classes_[i]) for i in proba.argmax(axis=1)]
    _write_sidecars(d, x[:8], labels, proba, atol=1e-6, classes=tuple(clf.classes_))
    if edgetpu_standin:
        tpu = d / "model_edgetpu.tflite"
        tpu.write_bytes(b"EDGETPU-STANDIN\n" + path.read_bytes())
        return Bundle(tpu, sha256_of(tpu))
    return Bundle(path, sha256_of(path))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path, help="directory to create the bundles in")
    p.add_argument("--framework", choices=["sklearn", "onnx", "tflite", "all"], default="all")
    p.add_argument("--seed", type=int, default=0, help="another seed trains another model (a new version)")
    args = p.parse_args(argv)
    makers = {"sklearn": sklearn_bundle, "onnx": onnx_bundle, "tflite": tflite_bundle}
    for name, make in makers.items():
        if args.framework in (name, "all"):
            bundle = make(args.out / name, seed=args.seed)
            print(f"MODEL_PATH={bundle.model_path} MODEL_SHA256={bundle.sha256}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
