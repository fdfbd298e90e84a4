"""TensorFlow-free runtime: load and run .tflite models with LiteRT, tflite-runtime or tf.lite."""
