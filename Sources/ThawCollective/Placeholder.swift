// ThawCollective: placeholder until its first file lands.
