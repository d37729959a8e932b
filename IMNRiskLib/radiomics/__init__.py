"""Features from images: settings, extractor, cache, pool, fast glcm, ibsi, reader stability."""
