from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from annotate import views as annotate_views
from rewardlab.health import healthz

admin.site.site_header = "RewardLab administration"
admin.site.site_title = "RewardLab"

urlpatterns = [
    path("", annotate_views.home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("rewardlab.api_urls")),
    path("", include("training.web_urls")),
    path("", include("annotate.urls")),
]
