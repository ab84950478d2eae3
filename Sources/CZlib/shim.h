// CZlib: zlib for reading gzip-compressed dataset files (IDX, NPZ members).
#include <zlib.h>
