// ThawTrainer: placeholder until its first file lands.
