"""What comes in: clinical schema, cohort manifest, images and masks (dicom readers)."""
