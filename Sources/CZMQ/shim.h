// CZMQ: libzmq's C API for Swift.
#include <zmq.h>
