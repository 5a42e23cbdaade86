"""Predictions on new raw data: `Predictor` (jaxnn.predict.predictor), built from a training
result (`result.predictor()`) or reloaded from a workdir (`jaxnn.predict.load.load_predictor`).
"""
