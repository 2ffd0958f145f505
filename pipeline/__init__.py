"""deepfake-pipeline, the library: plain Python, no Ray; every stage can be used alone."""

__version__ = "0.1.0"
