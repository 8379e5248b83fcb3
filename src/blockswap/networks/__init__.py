"""Networks: the block zoo, WRN and ResNet students, genotypes and exact counting."""
