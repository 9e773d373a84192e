"""One module per architecture group; importing them registers their adapters."""
