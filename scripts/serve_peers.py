"""Serving peers for scripts/serve-bench.sh: the course's own architecture, a Flask app that
loads a version's `model.lgb.txt` with lightgbm and answers MLflow's `dataframe_split` bodies,
and MLflow's scoring server on the same booster.

usage:
  serve_peers.py flask MODEL_TXT PORT        serve with Flask's threaded server (as the course does)
  serve_peers.py mlflow-save MODEL_TXT DIR   write an MLflow model (mlflow.lightgbm) for
                                             `mlflow models serve -m DIR --env-manager local`
"""
import sys


def flask_app(model_txt, port):
    import lightgbm
    import pandas as pd
    from flask import Flask, jsonify, request

    booster = lightgbm.Booster(model_file=model_txt)
    app = Flask("submit-peer")

    @app.post("/invocations")
    def invocations():
        split = request.get_json(force=True)["dataframe_split"]
        frame = pd.DataFrame(split["data"], columns=split["columns"])
        probabilities = booster.predict(frame)
        return jsonify({"predictions": [float(p) for p in probabilities]})

    @app.get("/ping")
    def ping():
        return "ok"

    app.run(host="127.0.0.1", port=int(port), threaded=True)


def mlflow_save(model_txt, directory):
    import lightgbm
    import mlflow.lightgbm

    booster = lightgbm.Booster(model_file=model_txt)
    mlflow.lightgbm.save_model(booster, directory)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "flask" and len(sys.argv) == 4:
        flask_app(sys.argv[2], sys.argv[3])
    elif command == "mlflow-save" and len(sys.argv) == 4:
        mlflow_save(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
