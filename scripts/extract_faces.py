"""Crop faces from labelled videos for training: a thin wrapper of `deepfake extract-faces`.

python scripts/extract_faces.py VIDEO_DIR --out FACES_DIR [--val-fraction 0.2]
"""

from jobs.cli import extract_faces

if __name__ == "__main__":
    extract_faces(prog_name="extract_faces.py")
