"""Load VTK's OpenGL and FreeType object factories (side-effect imports, once, before rendering)."""

import vtkmodules.vtkRenderingFreeType  # noqa: F401  text rendering
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  OpenGL render windows, mappers, textures
