"""calcdx.datasets: DICOM reading, study discovery, manifests, splits and the radiograph simulator."""
