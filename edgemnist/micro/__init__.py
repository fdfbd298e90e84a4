"""Microcontroller stage: TensorFlow Lite Micro sources (`firmware`), their arena and check, Cortex-M builds (`mcu`).

Usage: edgemnist firmware model_int8.tflite --out fw; edgemnist mcu fw --cpu cortex-m4
"""
