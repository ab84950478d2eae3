// ThawCoordinator: placeholder until its first file lands.
