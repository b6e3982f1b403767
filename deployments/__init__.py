"""What runs MLflow on a substrate a provisioner brought up."""
