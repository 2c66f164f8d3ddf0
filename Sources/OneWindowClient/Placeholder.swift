enum _PlaceholderOneWindowClient {}
