"""Math shared by several algorithms of the lecture: written once, imported everywhere it is needed."""
