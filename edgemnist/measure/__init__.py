"""Measure stage (TensorFlow-free): `eval`, `bench` (also on a device over SSH) and `compare`.

Usage: edgemnist eval model_int8.tflite; edgemnist compare runs/tflite/*.tflite --out runs/report
"""
