"""Pure tensor functions: geometry (simplex volumes, spectra, CKA, k-NN overlap)."""
