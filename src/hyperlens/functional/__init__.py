"""Pure tensor functions: HDC algebra, sketches and geometry."""
