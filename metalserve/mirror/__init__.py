"""Edge: a Hugging Face Hub mirror for air-gapped sites (``metalserve mirror serve``)."""
