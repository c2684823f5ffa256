"""Model-free checkers the filters use: arithmetic of math solutions and the code sandbox."""
