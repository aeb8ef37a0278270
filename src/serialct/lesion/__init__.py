"""COVID-Lesion Net: the paper's 2D lesion network, its training on phantoms, and inference."""
