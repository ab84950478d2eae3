// ThawData: placeholder until its first file lands.
