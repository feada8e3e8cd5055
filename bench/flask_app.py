"""The common tutorial setup, as the baseline: Flask's own server around a joblib model.

Deliberately written the way tutorials write it (no tuning), since that is what it stands for.
"""

import os

import joblib
import numpy as np
from flask import Flask, jsonify, request

app = Flask(__name__)
model = joblib.load(os.environ["MODEL_PATH"])


@app.route("/predict", methods=["POST"])
def predict():  # type: ignore[no-untyped-def]
    data = request.get_json()
    x = np.array(data["instances"])
    return jsonify(
        {
            "predictions": model.predict(x).tolist(),
            "probabilities": model.predict_proba(x).tolist(),
        }
    )


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]))
