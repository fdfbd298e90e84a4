"""Export stage (TensorFlow): every TFLite variant with its manifest (`export`), and `diagnose`.

Usage: edgemnist export --from runs/train/model.keras --out runs/tflite
"""
