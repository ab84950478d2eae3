// thaw: placeholder entry point.
print("thaw")
