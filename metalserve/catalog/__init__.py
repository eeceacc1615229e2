"""Catalogues: the one typed place for every hardware, model, pin and NCCL fact, with its source."""
