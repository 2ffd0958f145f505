"""The Ray edge of deepfake-pipeline: wiring of the library's stages into Ray jobs."""
