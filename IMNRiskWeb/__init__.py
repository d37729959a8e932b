"""The browser face of IMNRisk (trame-slicer): binds web state to the Slicer module's controller."""
