"""The Rekognition wire protocol: JSON 1.1 over HTTP, SigV4 auth, model-driven validation."""
