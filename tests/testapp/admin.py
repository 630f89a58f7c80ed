from django.contrib import admin

from .models import Document, Item

admin.site.register(Document)
admin.site.register(Item)
