// ThawOptim: placeholder until its first file lands.
