"""Methods: attacks, defences, influence, attribution, fragility, sensitivity, feature maps, statistics, controls."""
