"""Models from features: clinical tables, radiomics selection, models, protocols."""
