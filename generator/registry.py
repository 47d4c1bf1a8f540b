"""Built-in generators by short name; anything else is given as 'package.module:Class'."""

BUILTIN = {
    "shapes": "generator.shapes:ShapesGenerator",
    "digits": "generator.digits:DigitsGenerator",
    "strokes": "generator.strokes:StrokeDigitsGenerator",
}
