"""What goes out: report, figures, dicom seg/sr."""
