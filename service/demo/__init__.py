"""The offline demo: local servers that speak the providers' formats, and a scripted run."""
