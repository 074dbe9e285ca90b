"""picotflm: a small Keras CNN through compression, int8 TFLite, TFLM firmware for a Raspberry Pi Pico,
and measurement over serial. See README.md."""

__version__ = "0.1.0"
